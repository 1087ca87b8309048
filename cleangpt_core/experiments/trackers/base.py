"""What every experiment tracker implements, and the session that feeds a run's trackers.

A `TrackingSession` receives one run's training events (from the built-in plugin
``cleangpt_core.core_plugins.trackers``) and hands each tracker named in ``logging.report_to`` the run's metrics.
It owns the two promises every tracker keeps:

- A tracker that raises is reported once and dropped for the rest of the run; training, checkpoints and the
  other trackers go on.
- A resumed run continues the same tracker run (its id is kept in ``<run dir>/trackers.json``) and logs no
  step twice. A run killed after its last checkpoint replays the steps since then; a tracker whose tool can
  discard steps itself (TensorBoard's purge) gets every step as it happens, and any other receives a step
  once the checkpoint holding it is written, so what it shows is always what a resume continues from.
"""

from __future__ import annotations

import json
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cleangpt_core.checkpoints.atomic_write import write_text_atomic
from cleangpt_core.checkpoints.run_dir import RunDirectory
from cleangpt_core.config.tracking import TRACKERS
from cleangpt_core.plugin_api import load_object

if TYPE_CHECKING:
    from cleangpt_core.config.experiment import ExperimentConfig
    from cleangpt_core.config.tracking import LoggingConfig
    from cleangpt_core.trainers.base_trainer import BaseTrainer


@dataclass
class TrackedRun:
    """What a tracker knows about the run it reports: where it lives, its config, and whether it resumes."""

    run_dir: Path
    experiment: ExperimentConfig
    start_step: int  # 0 for a fresh run, else the step it resumes from
    state: dict[str, Any] = field(default_factory=dict)  # this tracker's saved state (its run id), kept on resume

    @property
    def logging(self) -> LoggingConfig:
        """The run's ``logging`` section."""
        return self.experiment.logging

    @property
    def run_name(self) -> str:
        """The display name of the tracker run: ``logging.run_name``, else the run directory's name."""
        return self.logging.run_name or self.run_dir.resolve().name


class Tracker(ABC):
    """One experiment tracker reporting one run.

    `start` opens the tracker's run (or reopens the one in ``run.state``) and returns the state to keep for a
    resume; `log_metrics` gets a step's scalars in step order; `commit` makes what was logged durable (called
    at every checkpoint); `finish` closes the run at the end of training.
    """

    discards_replayed_steps: ClassVar[bool] = False  # True: the tool itself drops steps a resume logs again

    def __init__(self, run: TrackedRun) -> None:
        self.run = run

    @abstractmethod
    def start(self) -> dict[str, Any]:
        """Open (or continue) the tracker run; return the JSON state that lets a resumed run continue it."""

    @abstractmethod
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Record the scalars of one step."""

    def log_text(self, step: int, name: str, text: str) -> None:  # noqa: B027 (optional: not every tool shows text)
        """Record a piece of text (a generated sample) at `step`; ignored by trackers that show no text."""

    def commit(self) -> None:  # noqa: B027 (optional: trackers that write synchronously have nothing to do)
        """Make everything logged so far durable: a checkpoint was just written."""

    @abstractmethod
    def finish(self, checkpoint: Path | None) -> None:
        """Close the tracker run at the end of training; `checkpoint` is the final checkpoint's folder."""


@dataclass(eq=False)  # compared by identity: a dropped tracker is removed, not an equal one
class _Active:
    name: str
    tracker: Tracker
    live: bool
    pending: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)  # calls held until a checkpoint


class TrackingSession:
    """The trackers of one run, fed from its training events (main process only)."""

    def __init__(self, trainer: BaseTrainer) -> None:
        experiment = trainer.experiment
        self.run_dir = Path(trainer.output_dir)
        self.failures: list[str] = []
        self.state_path = RunDirectory(self.run_dir).trackers_state
        saved = _read_state(self.state_path)
        start_step = trainer.progress.step
        # replays happen only when a run can resume from a checkpoint before its end
        may_replay = bool(getattr(trainer.options, "checkpoint_interval", None))
        self.trackers: list[_Active] = []
        for name in experiment.logging.report_to:
            run = TrackedRun(self.run_dir, experiment, start_step, saved.get(name, {}) if start_step else {})
            tracker = self._guard(name, lambda run=run, name=name: load_object(TRACKERS[name].target)(run))
            if tracker is not None:
                live = tracker.discards_replayed_steps or not may_replay
                self.trackers.append(_Active(name, tracker, live))
        states = {}
        for active in list(self.trackers):
            state = self._call(active, "start")
            if active in self.trackers:
                states[active.name] = state or {}
        _write_state(self.state_path, {**saved, **states})

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Send one step's scalars to every tracker (held back for those that cannot discard replays)."""
        self._send("log_metrics", step, metrics)

    def log_text(self, step: int, name: str, text: str) -> None:
        """Send a piece of text to every tracker."""
        self._send("log_text", step, name, text)

    def checkpoint_saved(self) -> None:
        """The steps so far are in a checkpoint: deliver what was held back and make it durable."""
        for active in list(self.trackers):
            self._deliver(active)
            if active in self.trackers:
                self._call(active, "commit")

    def finish(self, checkpoint: Path | None) -> None:
        """Deliver the rest and close every tracker run."""
        for active in list(self.trackers):
            self._deliver(active)
            if active in self.trackers:
                self._call(active, "finish", checkpoint)

    def _send(self, method: str, *arguments: Any) -> None:
        for active in list(self.trackers):
            if active.live:
                self._call(active, method, *arguments)
            else:
                active.pending.append((method, arguments))

    def _deliver(self, active: _Active) -> None:
        pending, active.pending = active.pending, []
        for method, arguments in pending:
            if active not in self.trackers:
                return
            self._call(active, method, *arguments)

    def _call(self, active: _Active, method: str, *arguments: Any) -> Any:
        return self._guard(active.name, lambda: getattr(active.tracker, method)(*arguments), active)

    def _guard(self, name: str, call: Any, active: _Active | None = None) -> Any:
        try:
            return call()
        except Exception as error:
            if active is not None:
                self.trackers.remove(active)
            message = (
                f"tracker {name!r} raised {type(error).__name__}: {' '.join(str(error).split())}; it is dropped "
                "for the rest of this run (training, checkpoints and the other trackers go on)"
            )
            self.failures.append(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return None


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}  # a state we cannot read starts new tracker runs rather than stopping training
    return state if isinstance(state, dict) else {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(state, indent=2) + "\n")
