"""Per-contender tuning on Optuna: one study per contender, its trials shared out among any number of workers.

Each contender gets two Optuna studies in one storage: ``<id>:<label>:tune`` holds its trials (each a setting of
the ``--tune`` keys, trained as ordinary run directories under ``tuning/<label>/<slot>/seed-<s>`` on the tuning
seeds, scored by the mean of their final validation losses), and ``<id>:<label>:final`` its final runs (the best
setting, trained once per ``--seeds`` seed into ``runs/``, as an untuned comparison's). On a ladder every rung has
its final study but only the smallest rung a study of trials, whose best setting every rung of the contender
trains (tune at the smallest rung, then transfer: `cleangpt_core.experiments.ladder`). ``<id>`` is a
fingerprint of what the comparison trains, so the same command started on another machine finds the same
studies, and another comparison in the same database never does.

Work is handed out through the storage, never by a home-made queue: every unit of work is a trial *enqueued*
with a ``slot`` (``trial-007``, ``seed-1337``), and a worker claims one by moving it from WAITING to RUNNING,
which the storage grants to exactly one of the workers trying (Optuna's own compare-and-set, the one
``study.ask`` uses). The grid's settings are enqueued as fixed parameters, rather than left to Optuna's
``GridSampler``, which may try a point twice when several workers ask at once; TPE's trials are enqueued
empty and the sampler fills each when it is claimed (with the constant liar, so running trials are not
proposed again). A claimed trial sends Optuna heartbeats; a worker killed mid-trial stops them, and the next
worker to look fails the trial as stale and re-enqueues it with the same parameters and slot
(``RetryHeartbeatStaleTrialCallback``). The retry trains into the slot's run directories, so it continues from
the killed worker's last checkpoint where the folder is shared (or starts the run over where it is not); the
failed original never counts, since a slot's result is its one COMPLETE trial. Should two workers enqueue the
same slot at once (both found it missing), the one claimed second sees the first and stands down.

A trial whose training diverges (`TrainingDivergedError`) is a FAIL with its reason in the study, not a crash.

Where the studies are stored, and the heartbeat: `cleangpt_core.experiments.tuning_storage`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleangpt_core.errors import ConfigError, TrainingDivergedError
from cleangpt_core.experiments.execution import Echo, read_result, run_is_finished, train_run
from cleangpt_core.experiments.plan import ComparisonPlan, PlannedRun
from cleangpt_core.experiments.tuning_spec import TunedKey
from cleangpt_core.experiments.tuning_storage import Heartbeat, open_storage

if TYPE_CHECKING:
    import optuna

TUNING_DIR = "tuning"
TUNING_PNG = "tuning.png"
BASIN = 0.01  # a setting is in the basin when its loss is within this of the best (nats per token)
# keys a contender's tuning may not change: what every run of a comparison shares, or where it trains
SHARED_KEYS = ("data.", "seed", "output.", "trainer.max_steps", "device")


def yaml_number(value: float | int) -> str:
    """A number as an override whose YAML reads back the same float (``1e-05`` is a string to YAML 1.1)."""
    text = repr(value)
    if isinstance(value, float) and "e" in text and "." not in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def setting_overrides(params: dict[str, float | int]) -> list[str]:
    """A trial's setting as ``--set`` overrides."""
    return [f"{key}={yaml_number(value)}" for key, value in params.items()]


def tuning_seeds(plan: ComparisonPlan, label: str) -> list[int]:
    """The seeds a contender's trials train on: the ones after its final runs' seeds, so those stay fresh."""
    assert plan.tuning is not None
    seeds = [run.seed for run in plan.runs if run.label == label]
    return list(range(max(seeds) + 1, max(seeds) + 1 + plan.tuning.tune_seeds))


def trial_runs(plan: ComparisonPlan, out_dir: Path, label: str, slot: str, params: dict[str, Any]) -> list[PlannedRun]:
    """A trial's runs: the contender's first final run at the trial's setting, on each tuning seed."""
    first = next(run for run in plan.runs if run.label == label)
    runs = []
    for seed in tuning_seeds(plan, label):
        directory = f"{label}/{slot}/seed-{seed}"
        overrides = (
            *first.overrides,  # later overrides win: the seed, the folder and the setting replace the final run's
            f"seed={seed}",
            f"output.dir={out_dir.resolve() / TUNING_DIR / directory}",
            *setting_overrides(params),
        )
        runs.append(PlannedRun(label, first.config_file, overrides, seed, directory))
    return runs


def final_run(run: PlannedRun, params: dict[str, Any]) -> PlannedRun:
    """A final run at the contender's best setting."""
    return replace(run, overrides=(*run.overrides, *setting_overrides(params)))


def check_tuning(plan: ComparisonPlan) -> None:
    """Every contender's config at both ends of every range validates, and optuna is there: before any training."""
    assert plan.tuning is not None
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("--tune needs Optuna: pip install 'optuna>=4.9'") from None
    if plan.tuning.storage is not None:  # a database the user named: reachable before the folder is written
        open_storage(plan.tuning, Path("."))
    for key in plan.tuning.keys:
        if key.key.startswith(SHARED_KEYS):
            raise ConfigError(
                f"--tune {key.text}: {key.key!r} is shared by every run of a comparison (data, seed, budget, "
                "output); tune a model, optimizer, schedule or trainer setting"
            )
    for label in plan.labels:
        for end in ("low", "high"):
            params = {key.key: _typed(key, getattr(key, end)) for key in plan.tuning.keys}
            for run in trial_runs(plan, Path("."), label, "check", params):
                try:
                    run.load()
                except ConfigError as error:
                    ranges = " ".join(key.text for key in plan.tuning.keys)
                    raise ConfigError(f"--tune {ranges}: contender {label!r} at the {end} end: {error}") from None


def _typed(key: TunedKey, value: float) -> float | int:
    return round(value) if key.integer else value


class Tuner:
    """One worker's share of a tuned comparison: claims trials and final runs until none is left."""

    def __init__(
        self,
        plan: ComparisonPlan,
        out_dir: Path,
        *,
        echo: Echo = print,
        callbacks: Sequence[object] = (),
    ) -> None:
        import optuna

        assert plan.tuning is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.plan, self.spec, self.out_dir, self.echo, self.callbacks = plan, plan.tuning, out_dir, echo, callbacks
        out_dir.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(self.spec, out_dir)
        prefix = plan.fingerprint()
        first_seed = plan.runs[0].seed
        self.studies: dict[tuple[str, str], optuna.Study] = {}
        for label in plan.labels:
            for kind in ("tune", "final") if label in self.tuned_labels else ("final",):
                sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=first_seed)
                if kind == "tune" and self.spec.sampler == "tpe":
                    sampler = optuna.samplers.TPESampler(
                        seed=first_seed, constant_liar=True, n_startup_trials=max(2, self.spec.trials // 3)
                    )
                self.studies[label, kind] = optuna.create_study(
                    study_name=f"{prefix}:{label}:{kind}",
                    storage=self.storage,
                    sampler=sampler,
                    direction="minimize",
                    load_if_exists=True,
                )

    def tuned_at(self, label: str) -> str:
        """The label whose study tunes `label`'s runs: itself, or on a ladder its contender's smallest rung (tune at
        the smallest rung, then transfer the best setting to every rung)."""
        return self.plan.ladder.smallest(label) if self.plan.ladder is not None else label

    @property
    def tuned_labels(self) -> list[str]:
        """The labels that have a study of trials, in plan order."""
        return [label for label in self.plan.labels if self.tuned_at(label) == label]

    # -- the work ---------------------------------------------------------------------------------------------

    def tune_slots(self) -> dict[str, dict[str, Any]]:
        """Every trial's slot and its fixed setting (the grid's points; empty for TPE, sampled when claimed)."""
        if self.spec.sampler == "grid":
            return {f"trial-{i:03d}": params for i, params in enumerate(self.spec.grid())}
        return {f"trial-{i:03d}": {} for i in range(self.spec.trials)}

    def final_slots(self, label: str) -> dict[str, dict[str, Any]]:
        return {f"seed-{run.seed}": {} for run in self.plan.runs if run.label == label}

    def work(self, poll_s: float | None = None) -> None:
        """Train what is left, claiming one trial or final run at a time, until every one has finished."""
        import optuna

        poll_s = poll_s if poll_s is not None else min(5.0, self.spec.heartbeat_s / 2)
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                for study in self.studies.values():
                    optuna.storages.fail_stale_trials(study)  # a killed worker's trials go back to WAITING
            if self._claim_and_train():
                continue
            if self.finished():
                return
            time.sleep(poll_s)  # what is left is running elsewhere (or a stale trial's grace is not over yet)

    def _claim_and_train(self) -> bool:
        for label in self.tuned_labels:
            study = self.studies[label, "tune"]
            self._enqueue_missing(study, self.tune_slots())
            if (trial := self._claim(study)) is not None:
                self._train_trial(label, study, trial)
                return True
        for label in self.plan.labels:
            if not self._slots_done(self.studies[self.tuned_at(label), "tune"], self.tune_slots()):
                continue
            best = self.best(self.tuned_at(label))
            if best is None:  # every trial failed: nothing to train the final runs at
                continue
            study = self.studies[label, "final"]
            self._enqueue_missing(study, self.final_slots(label))
            if (trial := self._claim(study)) is not None:
                self._train_final(label, study, trial, best["params"])
                return True
        return False

    def finished(self) -> bool:
        """Whether every contender's trials, and the final runs of those with a best setting, have finished."""
        for label in self.plan.labels:
            if not self._slots_done(self.studies[self.tuned_at(label), "tune"], self.tune_slots()):
                return False
            if self.best(self.tuned_at(label)) is not None and not self._slots_done(
                self.studies[label, "final"], self.final_slots(label)
            ):
                return False
        return True

    # -- slots: enqueue once, claim once, finish once ----------------------------------------------------------

    @staticmethod
    def _counted(trial: optuna.trial.FrozenTrial) -> bool:
        """Whether a trial is its slot's result, or is working toward one (a stood-down duplicate or a killed
        worker's stale trial is neither)."""
        from optuna.trial import TrialState

        if trial.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE):
            return True
        return trial.state == TrialState.FAIL and "failure" in trial.user_attrs

    def _enqueue_missing(self, study: optuna.Study, slots: dict[str, dict[str, Any]]) -> None:
        covered = {t.user_attrs.get("slot") for t in study.get_trials(deepcopy=False) if self._counted(t)}
        for slot, params in slots.items():
            if slot not in covered:
                study.enqueue_trial(params, user_attrs={"slot": slot})

    def _slots_done(self, study: optuna.Study, slots: dict[str, dict[str, Any]]) -> bool:
        from optuna.trial import TrialState

        done = {
            t.user_attrs.get("slot")
            for t in study.get_trials(deepcopy=False)
            if self._counted(t) and t.state in (TrialState.COMPLETE, TrialState.FAIL)
        }
        return set(slots) <= done

    def _claim(self, study: optuna.Study) -> optuna.Trial | None:
        """A WAITING trial moved to RUNNING by this worker (the storage grants each to one), heartbeat started.

        A slot has one owner: its finished trial if it has one, else its lowest-numbered waiting or running
        trial; a claimed trial that is not its slot's owner (a slot enqueued twice) stands down untrained.
        """
        import optuna
        from optuna.trial import TrialState

        study_id = self.storage.get_study_id_from_name(study.study_name)
        for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
            if not self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue  # another worker took it first
            trial = optuna.Trial(study, trial_id)
            self._heartbeat = Heartbeat(self.storage, trial_id, self.spec.heartbeat_s)
            slot = waiting.user_attrs["slot"]
            twins = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("slot") == slot and t.number != waiting.number and self._counted(t)
            ]
            done = (TrialState.COMPLETE, TrialState.FAIL)
            if any(t.state in done or t.number < waiting.number for t in twins):
                self._finish(study, trial, duplicate=True)
                continue
            return trial
        return None

    def _give_back(self, study: optuna.Study, trial: optuna.Trial) -> None:
        """An interrupted trial: failed without a result, and enqueued again with its setting and slot, so the
        next worker continues its runs from their checkpoints at once rather than after the heartbeat's grace."""
        import optuna

        self._finish(study, trial)
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)

    def _finish(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        value: float | None = None,
        *,
        failure: str | None = None,
        duplicate: bool = False,
    ) -> None:
        from optuna.trial import TrialState

        self._heartbeat.stop()
        if duplicate:
            trial.set_user_attr("duplicate", True)
        if failure is not None:
            trial.set_user_attr("failure", failure)
        if value is None:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)

    def _suggest(self, trial: optuna.Trial) -> dict[str, float | int]:
        params: dict[str, float | int] = {}
        for key in self.spec.keys:
            if key.integer:
                params[key.key] = trial.suggest_int(key.key, round(key.low), round(key.high), log=key.log)
            else:
                params[key.key] = trial.suggest_float(key.key, key.low, key.high, log=key.log)
        return params

    def _train(self, run: PlannedRun, position: str) -> dict[str, Any]:
        run_dir = Path(run.load().output.dir)
        if run_is_finished(run_dir):  # a retried trial keeps the seeds its killed worker finished
            return read_result(run_dir)
        return train_run(run, self.plan.max_steps[run.label], position, echo=self.echo, callbacks=self.callbacks)

    def _train_trial(self, label: str, study: optuna.Study, trial: optuna.Trial) -> None:
        slot = trial.user_attrs["slot"]
        params = self._suggest(trial)
        shown = ", ".join(f"{key}={value:.4g}" for key, value in params.items())
        self.echo(f"[{label} {slot}] tuning {shown}")
        try:
            results = [
                self._train(run, f"[{label} {slot}]")
                for run in trial_runs(self.plan, self.out_dir, label, slot, params)
            ]
        except TrainingDivergedError as error:
            self.echo(f"[{label} {slot}] failed: {error}")
            self._finish(study, trial, failure=str(error))
            return
        except BaseException:
            self._give_back(study, trial)  # interrupted (Ctrl-C): continued by the next worker, or on resume
            raise
        losses = [r["val_loss"] for r in results]
        if any(loss is None or not math.isfinite(loss) for loss in losses):
            self._finish(study, trial, failure="a run ended without a finite validation loss")
            return
        trial.set_user_attr("results", results)
        self._finish(study, trial, math.fsum(losses) / len(losses))

    def _train_final(self, label: str, study: optuna.Study, trial: optuna.Trial, params: dict[str, Any]) -> None:
        slot = trial.user_attrs["slot"]
        run = next(run for run in self.plan.runs if run.label == label and f"seed-{run.seed}" == slot)
        try:
            result = self._train(final_run(run, params), f"[{label} final {slot}]")
        except TrainingDivergedError as error:
            self._finish(study, trial, failure=str(error))
            return
        except BaseException:
            self._give_back(study, trial)
            raise
        trial.set_user_attr("result", result)
        loss = result.get("val_loss")
        self._finish(
            study,
            trial,
            loss if loss is not None and math.isfinite(loss) else None,
            failure=None if loss is not None and math.isfinite(loss) else "no finite validation loss",
        )

    # -- what the studies say ------------------------------------------------------------------------------------

    def trials(self, label: str) -> list[dict[str, Any]]:
        """Each tuning slot's outcome: its setting, its loss (None when it failed) and why it failed."""
        from optuna.trial import TrialState

        outcome: dict[str, dict[str, Any]] = {}
        for trial in self.studies[label, "tune"].get_trials(deepcopy=False):
            if self._counted(trial) and trial.state in (TrialState.COMPLETE, TrialState.FAIL):
                outcome[trial.user_attrs["slot"]] = {
                    "slot": trial.user_attrs["slot"],
                    "number": trial.number,
                    "params": dict(trial.params),
                    "loss": trial.value if trial.state == TrialState.COMPLETE else None,
                    "failure": trial.user_attrs.get("failure"),
                    "runs": [
                        {"seed": r["seed"], "val_loss": r["val_loss"]} for r in trial.user_attrs.get("results", [])
                    ],
                }
        return [outcome[slot] for slot in sorted(outcome)]

    def best(self, label: str) -> dict[str, Any] | None:
        """The trial with the lowest loss (the first slot among equals); None when none completed."""
        completed = [t for t in self.trials(label) if t["loss"] is not None]
        return min(completed, key=lambda t: (t["loss"], t["slot"])) if completed else None

    def results(self) -> list[dict[str, Any]]:
        """The final runs' results, in plan order (a contender whose trials all failed has none)."""
        from optuna.trial import TrialState

        found: dict[tuple[str, str], dict[str, Any]] = {}
        for label in self.plan.labels:
            for trial in self.studies[label, "final"].get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                found[label, trial.user_attrs["slot"]] = trial.user_attrs["result"]
        return [found[key] for run in self.plan.runs if (key := (run.label, f"seed-{run.seed}")) in found]

    def summary(self) -> dict[str, Any]:
        """The tuning as report.json records it: per contender its trials, best setting and basin."""
        return {
            "sampler": self.spec.sampler,
            "trials": self.spec.trials,
            "keys": [vars(key) for key in self.spec.keys],
            "tune_seeds": {label: tuning_seeds(self.plan, label) for label in self.tuned_labels},
            "contenders": {
                label: {
                    "best": self.best(label),
                    "basin": basin(self.trials(label), self.spec.keys),
                    "trials": self.trials(label),
                }
                for label in self.tuned_labels
            },
        }


def basin(trials: Sequence[dict[str, Any]], keys: Sequence[TunedKey]) -> dict[str, list[float]] | None:
    """Per key, the lowest and highest setting among the trials within `BASIN` of the best loss."""
    completed = [t for t in trials if t["loss"] is not None]
    if not completed:
        return None
    best = min(t["loss"] for t in completed)
    near = [t for t in completed if t["loss"] <= best + BASIN]
    return {key.key: [min(t["params"][key.key] for t in near), max(t["params"][key.key] for t in near)] for key in keys}
