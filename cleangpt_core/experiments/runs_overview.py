"""``cleangpt runs``: every run and comparison under a folder, where each stands, and what differs between them.

A *run* is a run directory (`cleangpt_core.checkpoints.run_dir`: ``cleangpt train``'s, or one of a comparison's
runs and trials); a *comparison* a folder holding ``compare.json``. Everything is read from the files the runs
write, nothing is imported from a run and nothing is written (except the TensorBoard files asked for):

- a run's state: *running* while the process that holds its lock is alive, *finished* when its last checkpoint
  is the final one (or, in a comparison, its result is saved), *interrupted* otherwise, with the command that
  continues it;
- its steps and tokens (at its latest checkpoint; a running run's from its metrics), its best validation loss
  (over every evaluation, periodic ones included) and, once finished, the final one;
- the config keys whose values differ between the runs listed (the run directory aside).

`write_tensorboard` turns each run's ``metrics.jsonl`` into TensorBoard event files under ``<run>/tensorboard``,
with the tracker's scalar names, so ``tensorboard --logdir DIR`` shows every run's curves, also of runs trained
without the tensorboard tracker (one trained with it already has its files there, and is left alone).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.checkpoints.run_dir import (
    CHECKPOINTS_DIR,
    EXPERIMENT_FILE,
    LATEST_FILE,
    LOCK_OWNER_FILE,
    METRICS_FILE,
    STATE_JSON_FILE,
    RunDirectory,
)
from cleangpt_core.config.base import flatten_config
from cleangpt_core.config.tracking import TRACKERS
from cleangpt_core.errors import CheckpointError, CleanGPTError, ConfigError
from cleangpt_core.experiments.execution import RESULT_FILE
from cleangpt_core.experiments.plan import PLAN_FILE, RUNS_DIR
from cleangpt_core.experiments.report import REPORT_JSON

# the suffix of the event files `write_tensorboard` writes, so that writing them again replaces its own only
TENSORBOARD_SUFFIX = ".from-metrics"
# keys every run has its own value of, which say nothing about how two runs differ
NOT_A_DIFFERENCE = ("output.dir",)


@dataclass
class RunStatus:
    """One run directory as `cleangpt runs` shows it."""

    path: str
    state: str  # running | finished | interrupted
    resume: str | None = None  # the command that continues an interrupted run
    step: int | None = None
    max_steps: int | None = None
    tokens: int | None = None
    best_val_loss: float | None = None
    final_val_loss: float | None = None
    comparison: str | None = None  # the comparison folder it belongs to
    problem: str | None = None  # why part of it could not be read
    differs: dict[str, Any] = field(default_factory=dict)  # its values of the keys that differ between the runs
    config: dict[str, Any] | None = field(default=None, repr=False)  # flattened; not shown


@dataclass
class ComparisonStatus:
    """One comparison folder as `cleangpt runs` shows it."""

    path: str
    state: str
    runs: int
    finished: int
    resume: str | None = None


def overview(root: Path) -> tuple[list[ComparisonStatus], list[RunStatus]]:
    """Every comparison and run under `root`, in path order, each run with the config keys that differ."""
    comparisons: list[ComparisonStatus] = []
    runs: list[RunStatus] = []
    comparison_of: dict[Path, Path] = {}
    for folder in _folders(root):
        if (folder / PLAN_FILE).is_file():
            comparison_of[folder] = folder
        if _is_run(folder):
            owner = next((c for c in comparison_of if c in folder.parents), None)
            runs.append(_run_status(folder, owner))
    for folder in comparison_of:
        members = [run for run in runs if run.comparison == str(folder)]
        comparisons.append(_comparison_status(folder, members))
    _mark_differences(runs)
    return comparisons, runs


def _folders(root: Path) -> Iterator[Path]:
    """`root` and the folders under it, parents first, without descending into a run's own subfolders."""
    for current, subfolders, _ in os.walk(root):
        folder = Path(current)
        yield folder
        if _is_run(folder):
            subfolders.clear()
        subfolders.sort()


def _is_run(folder: Path) -> bool:
    return (folder / CHECKPOINTS_DIR).is_dir() or (folder / LATEST_FILE).is_file() or (folder / METRICS_FILE).is_file()


def _run_status(folder: Path, comparison: Path | None) -> RunStatus:
    status = RunStatus(str(folder), "interrupted")
    status.comparison = str(comparison) if comparison is not None else None
    run = RunDirectory(folder)
    try:
        records = _metrics(run)
        checkpoint = run.latest()
        state = _trainer_state(checkpoint) if checkpoint is not None else None
        experiment = _experiment(checkpoint) if checkpoint is not None else None
    except (CleanGPTError, OSError) as error:
        status.problem = " ".join(str(error).split())
        return status
    if experiment is not None:
        status.config = flatten_config(experiment)
        max_steps = experiment.get("trainer", {}).get("max_steps")
        status.max_steps = max_steps if isinstance(max_steps, int) else None
    progress = (state or {}).get("progress", {})
    status.step, status.tokens = progress.get("step"), progress.get("tokens")
    losses = [r["val_loss"] for r in records if isinstance(r.get("val_loss"), int | float)]
    status.best_val_loss = min(losses) if losses else None
    holder = _holder(folder)
    if holder is not None:
        status.state = f"running ({holder})" if holder != "alive" else "running"
        trained = [r for r in records if "tokens" in r]
        if trained:  # further along than its last checkpoint
            status.step, status.tokens = trained[-1]["step"], trained[-1]["tokens"]
        return status
    result = folder / RESULT_FILE
    if result.is_file() or (state or {}).get("finished") or _reached_budget(progress, status.max_steps):
        status.state = "finished"
        final = read_json(result, CheckpointError, "train the run again").get("val_loss") if result.is_file() else None
        at_end = [r["val_loss"] for r in records if "val_loss" in r and r["step"] == status.step]
        status.final_val_loss = final if final is not None else (at_end[-1] if at_end else None)
        return status
    if comparison is not None:
        status.resume = f"cleangpt compare --resume {comparison}"
    elif checkpoint is not None:
        status.resume = f"cleangpt train --resume {status.path}"
    else:
        status.problem = "stopped before its first checkpoint: nothing to continue, train it again"
    return status


def _metrics(run: RunDirectory) -> list[dict[str, Any]]:
    """The metrics lines of a run; a line cut short by a kill (always the last) is left out."""
    if not run.metrics.is_file():
        return []
    records = []
    for line in run.metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def _trainer_state(checkpoint: Path) -> dict[str, Any]:
    payload = read_json(checkpoint / STATE_JSON_FILE, CheckpointError, "resume from another checkpoint")
    state = payload.get("state") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint / STATE_JSON_FILE} is damaged: it holds no trainer state")
    return state


def _experiment(checkpoint: Path) -> dict[str, Any] | None:
    path = checkpoint / EXPERIMENT_FILE
    if not path.is_file():
        return None
    data = read_json(path, CheckpointError, "resume from another checkpoint")
    return data if isinstance(data, dict) else None


def _reached_budget(progress: dict[str, Any], max_steps: int | None) -> bool:
    """A run saved before checkpoints recorded whether they were the final one: finished at its step budget."""
    step = progress.get("step")
    return isinstance(step, int) and max_steps is not None and step >= max_steps


def _holder(folder: Path) -> str | None:
    """Who trains into the run now: "alive" (a process on this machine), its host (elsewhere), or None.

    The lock's owner file is written by the holder and removed when it lets go; a killed holder leaves it, so
    on this machine the process it names must still be alive (``kill -0``).
    """
    try:
        owner = json.loads((folder / LOCK_OWNER_FILE).read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return f"on {host}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, someone else's
        pass
    return "alive"


def _comparison_status(folder: Path, members: list[RunStatus]) -> ComparisonStatus:
    try:
        plan = read_json(folder / PLAN_FILE, ConfigError, "start the comparison again with another --out")
        planned = [entry["directory"] for entry in plan["runs"]]
    except (CleanGPTError, KeyError, TypeError):
        planned = []
    finished = sum((folder / RUNS_DIR / directory / RESULT_FILE).is_file() for directory in planned)
    shown = str(folder)
    if any(member.state.startswith("running") for member in members):
        state, resume = "running", None
    elif planned and finished == len(planned) and (folder / REPORT_JSON).is_file():
        state, resume = "finished", None
    else:
        state, resume = "interrupted", f"cleangpt compare --resume {shown}"
    return ComparisonStatus(shown, state, len(planned), finished, resume)


def _mark_differences(runs: list[RunStatus]) -> None:
    """Give each run its values of the config keys that are not the same in every run with a config."""
    configs = [run.config for run in runs if run.config is not None]
    if len(configs) < 2:
        return
    keys = sorted({key for config in configs for key in config} - set(NOT_A_DIFFERENCE))
    differing = [key for key in keys if len({json.dumps(config.get(key)) for config in configs}) > 1]
    for run in runs:
        if run.config is not None:
            run.differs = {key: run.config.get(key) for key in differing}


def overview_json(comparisons: list[ComparisonStatus], runs: list[RunStatus]) -> dict[str, Any]:
    """The overview as `cleangpt runs --json` prints it."""
    return {
        "comparisons": [asdict(comparison) for comparison in comparisons],
        "runs": [{key: value for key, value in asdict(run).items() if key != "config"} for run in runs],
    }


def as_text(root: Path, comparisons: list[ComparisonStatus], runs: list[RunStatus]) -> str:
    """The overview as tables a person reads, then the commands that continue what was interrupted."""
    if not runs and not comparisons:
        return f"no runs under {root}"
    blocks = []
    if comparisons:
        rows = [["comparison", "state", "runs finished"]]
        rows += [[c.path, c.state, f"{c.finished}/{c.runs}"] for c in comparisons]
        blocks.append(_table(rows))
    rows = [["run", "state", "steps", "tokens", "best val", "final val", "differs"]]
    for run in runs:
        steps = "" if run.step is None else f"{run.step:,}" + (f"/{run.max_steps:,}" if run.max_steps else "")
        rows.append(
            [
                run.path,
                run.state,
                steps,
                "" if run.tokens is None else f"{run.tokens:,}",
                _loss(run.best_val_loss),
                _loss(run.final_val_loss),
                ", ".join(f"{key}={json.dumps(value)}" for key, value in run.differs.items()),
            ]
        )
    blocks.append(_table(rows))
    resumes = [c.resume for c in comparisons if c.resume] + [r.resume for r in runs if r.resume and not r.comparison]
    if resumes:
        blocks.append("continue with:\n" + "\n".join(f"  {command}" for command in resumes))
    problems = [f"  {run.path}: {run.problem}" for run in runs if run.problem]
    if problems:
        blocks.append("could not read all of:\n" + "\n".join(problems))
    return "\n\n".join(blocks)


def _loss(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def write_tensorboard(runs: list[RunStatus]) -> list[Path]:
    """Event files from each run's metrics.jsonl (replacing those written earlier by this function), for every run
    that has no event files of the tensorboard tracker; returns the folders written."""
    spec = TRACKERS["tensorboard"]
    if spec.missing_packages():
        raise ConfigError(f"--tensorboard writes TensorBoard event files, which needs its package: {spec.install_hint}")
    from torch.utils.tensorboard import SummaryWriter

    from cleangpt_core.experiments.trackers.events import EVALUATION_SCALARS, STEP_SCALARS

    written = []
    for run in runs:
        folder = RunDirectory(run.path)
        records = _metrics(folder)
        events = folder.tensorboard_dir
        ours = sorted(events.glob(f"events.out.tfevents.*{TENSORBOARD_SUFFIX}")) if events.is_dir() else []
        theirs = [path for path in events.glob("events.out.tfevents.*") if path not in ours] if events.is_dir() else []
        if not records or theirs:
            continue
        for path in ours:
            path.unlink()
        writer = SummaryWriter(str(events), filename_suffix=TENSORBOARD_SUFFIX)
        try:
            for record in records:
                for key, name in STEP_SCALARS.items():
                    if isinstance(record.get(key), int | float):
                        writer.add_scalar(name, record[key], record["step"])
                for key, name in EVALUATION_SCALARS.items():
                    if isinstance(record.get(f"val_{key}"), int | float):
                        writer.add_scalar(name, record[f"val_{key}"], record["step"])
        finally:
            writer.close()
        written.append(events)
    return written
