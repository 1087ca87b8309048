"""Training a comparison's runs: each run to its budget through the experiment runner of ``cleangpt train``,
its progress lines and clock, and its result (``result.json`` beside its checkpoints).

A run that finished is kept; an unfinished run continues from its latest checkpoint (exactly, as ``cleangpt
train --resume`` does); a run that never reached a checkpoint starts over. So an interrupted comparison started
again trains only what is left. The tuner (`cleangpt_core.experiments.tuning`) trains its trials and final runs
through `train_run` too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cleangpt_core.checkpoints.atomic_write import write_text_atomic
from cleangpt_core.config.model import model_description
from cleangpt_core.experiments.plan import RUNS_DIR, ComparisonPlan, PlannedRun, tokens_per_step
from cleangpt_core.experiments.progress_lines import ProgressLines

RESULT_FILE = "result.json"
CLOCK_FILE = "compare_clock.json"

Echo = Callable[[str], None]


# About how many step lines each run of a comparison writes (`ProgressLines`); its evaluations have one each
LINES_PER_RUN = 10


class RunRecorder:
    """A training callback: a run's parameter counts, and its clock across interruptions.

    Wall time counts everything from the first step to the final checkpoint (evaluations included); training
    time only the optimizer steps, which is what tokens/s divides by. Both are saved at every checkpoint, so
    a resumed run adds to the time it had at the checkpoint it resumes from. (Its progress lines are
    `ProgressLines`', the same as ``cleangpt train`` writes.)
    """

    def __init__(self) -> None:
        self.parameters: int | None = None
        self.all_parameters = 0
        self.wall_s = 0.0
        self.train_s = 0.0
        self._clock: dict[str, dict[str, float]] = {}
        self._segment_start = 0.0
        self._wall_before = 0.0
        self._step_start = 0.0

    def on_train_begin(self, trainer: Any) -> None:
        model = trainer.raw_model
        self.parameters = model.get_num_params() if hasattr(model, "get_num_params") else None
        # every tensor, position embeddings included, a tied embedding once: the count records are held to
        self.all_parameters = sum(parameter.numel() for parameter in model.parameters())
        path = Path(trainer.output_dir) / CLOCK_FILE
        resumed = trainer.progress.step > 0 and path.is_file()  # a run started over starts a new clock
        self._clock = json.loads(path.read_text(encoding="utf-8")) if resumed else {}
        at_start = self._clock.get(str(trainer.progress.step), {"wall_s": 0.0, "train_s": 0.0})
        self._wall_before, self.train_s = at_start["wall_s"], at_start["train_s"]
        self._segment_start = time.perf_counter()

    def on_step_begin(self) -> None:
        self._step_start = time.perf_counter()

    def on_step_end(self) -> None:
        self.train_s += time.perf_counter() - self._step_start

    def on_checkpoint_saved(self, trainer: Any, step: int) -> None:
        self.wall_s = self._wall_before + time.perf_counter() - self._segment_start
        self._clock[str(step)] = {"wall_s": self.wall_s, "train_s": self.train_s}
        write_text_atomic(Path(trainer.output_dir) / CLOCK_FILE, json.dumps(self._clock))


def run_is_finished(run_dir: Path) -> bool:
    """Whether a run of the comparison completed (its result is saved)."""
    return (run_dir / RESULT_FILE).is_file()


def read_result(run_dir: Path) -> dict[str, Any]:
    """The saved result of a finished run."""
    return json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))


def train_run(run: PlannedRun, position: str, *, echo: Echo, callbacks: Sequence[object] = ()) -> dict[str, Any]:
    """Train one run of the plan to its budget (its config's ``trainer.max_steps``, continuing its latest
    checkpoint) and save its result."""
    from cleangpt_core.checkpoints.run_dir import RunDirectory
    from cleangpt_core.experiments.training_run import resume_config, run_experiment, sets_warmup
    from cleangpt_core.trainers.metrics import read_metrics

    config = run.load()
    run_dir = RunDirectory(config.output.dir)
    recorder = RunRecorder()
    all_callbacks = [recorder, *callbacks]

    def prefixed(line: str) -> None:
        echo(f"{position} {run.title}: {line}")

    progress = ProgressLines(prefixed, lines_per_run=LINES_PER_RUN)
    load_before = _load_average()
    if run_dir.latest() is not None:
        saved_config, checkpoint = resume_config(run_dir.root)
        stats = run_experiment(
            saved_config, resume_from=checkpoint, echo=prefixed, callbacks=all_callbacks, progress=progress
        )
    else:  # stopped before its first checkpoint, if at all: nothing to continue from, so start over
        stats = run_experiment(
            config,
            overwrite=True,
            echo=prefixed,
            callbacks=all_callbacks,
            progress=progress,
            shorten_warmup=not sets_warmup(run.overrides),
        )
    records = read_metrics(run_dir.metrics) if run_dir.metrics.is_file() else []
    train_lines = [r for r in records if "loss" in r]
    result = {
        "label": run.label,
        "seed": run.seed,
        "model_type": config.model.model_type,
        "model": model_description(config.model),
        "config_file": run.config_file,
        "parameters": recorder.parameters,
        "all_parameters": recorder.all_parameters,
        "steps": stats["steps"],
        "tokens": stats["tokens"],
        "tokens_per_step": tokens_per_step(config),
        # how often the curve was measured, and on how many validation batches (None: all of them)
        "eval_interval": config.trainer.options.get("eval_interval"),
        "eval_max_batches": config.trainer.options.get("eval_max_batches"),
        # the mean over the last logging interval: the last single step's loss is too noisy to compare
        "train_loss": train_lines[-1]["loss"] if train_lines else stats["train_loss"],
        "val_loss": stats.get("val_loss"),
        "val_perplexity": stats.get("val_perplexity"),
        "val_tokens": stats.get("val_tokens"),  # what the final evaluation scored (data.eval_tokens at most)
        "val_stderr": stats.get("val_stderr"),  # its standard error, over the validation batches
        "tokens_per_s": stats["tokens"] / recorder.train_s if recorder.train_s > 0 else None,
        # tokens/s is measured while this run trained alone; the load average says how busy the machine was
        "load_average": [load_before, _load_average()],
        "wall_s": recorder.wall_s,
        "checkpoint": stats.get("checkpoint"),
        "sample": stats.get("sample"),
        # one point per step: the final evaluation (every validation batch) replaces a periodic estimate
        "val_curve": [
            [step, loss] for step, loss in {r["step"]: r["val_loss"] for r in records if "val_loss" in r}.items()
        ],
    }
    write_text_atomic(run_dir.root / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    return result


def _load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none, e.g. Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_comparison(
    plan: ComparisonPlan, out_dir: Path, *, echo: Echo = print, callbacks: Sequence[object] = ()
) -> list[dict[str, Any]]:
    """Train every unfinished run of the plan (finished ones are kept) and return all results in plan order."""
    results = []
    for index, run in enumerate(plan.runs, start=1):
        position = f"[{index}/{len(plan.runs)}]"
        run_dir = out_dir / RUNS_DIR / run.directory
        if run_is_finished(run_dir):
            echo(f"{position} {run.title}: finished earlier, kept ({run_dir / RESULT_FILE})")
            results.append({"seed": run.seed, **read_result(run_dir)})  # a version-1 result has no seed
            continue
        results.append(train_run(run, position, echo=echo, callbacks=callbacks))
    return results
