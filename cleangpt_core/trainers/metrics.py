"""The built-in metrics logger: ``metrics.jsonl`` and ``loss_curve.png`` in the run directory.

It is an ordinary observer of training events (registered as a plugin by ``cleangpt_core.core_plugins.trainers``),
so it shows the pattern any logging plugin would follow. Only the main process writes. Each line of
``metrics.jsonl`` is one JSON object: training lines carry ``step``, ``epoch``, ``loss`` (mean over the steps
since the previous line), ``lr``, ``tokens_per_s`` and ``step_time_s`` (over the training steps since the
previous line, timed with the device synchronised: `cleangpt_core.trainers.throughput`) and ``tokens``;
evaluation lines carry ``step``, ``val_loss`` and ``val_perplexity``. A resumed run first drops the lines a
killed run wrote after its last checkpoint, and its first line averages the losses that checkpoint kept of the
steps before it since the last line, so the file reads as one uninterrupted run, bit for bit (timings apart).
The file is only ever appended to, or replaced whole by an atomic rename, so a kill at any moment leaves the
history as it was or as it was meant to become.
"""

from __future__ import annotations

import json
import math
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cleangpt_core.checkpoints.atomic_write import atomic_target, write_text_atomic
from cleangpt_core.checkpoints.run_dir import RunDirectory

if TYPE_CHECKING:
    from cleangpt_core.trainers.base_trainer import BaseTrainer


class MetricsLogger:
    """Appends metrics lines for one run and draws its loss curve at the end."""

    def __init__(self, run_dir: Path, log_interval: int, start_step: int, losses_before: Sequence[float] = ()) -> None:
        self.run = RunDirectory(run_dir)
        self.path = self.run.metrics
        self.log_interval = log_interval
        self.run.root.mkdir(parents=True, exist_ok=True)
        _keep_lines_up_to(self.path, start_step)
        self._file: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  (open for the whole run)
        # the metrics of the steps since the last line, starting with the losses a resumed run's checkpoint kept
        self._steps: list[dict[str, Any]] = [{"loss": loss} for loss in losses_before]
        self._started = time.perf_counter()

    def step(self, step: int, metrics: dict[str, Any]) -> None:
        """Record one optimizer step; every `log_interval` steps write their mean loss.

        A step's loss is read only when its line is written: the trainer keeps it on the device till then.
        """
        self._steps.append(metrics)
        if step % self.log_interval == 0:
            self._flush_steps(step, metrics)

    def _flush_steps(self, step: int, metrics: dict[str, Any]) -> None:
        if not self._steps:
            return
        losses = [step_metrics["loss"] for step_metrics in self._steps]
        line = {
            "step": step,
            "epoch": metrics["epoch"],
            "loss": sum(losses) / len(losses),
            "lr": metrics["lr"],
            "tokens_per_s": metrics["tokens_per_s"],
            "step_time_s": metrics.get("step_time_s"),  # a third-party trainer may not send it
            "tokens": metrics["tokens"],
            "elapsed_s": round(time.perf_counter() - self._started, 3),
        }
        self._steps.clear()
        self._write(line)

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        """Record a validation result."""
        self._write({"step": step, "val_loss": metrics["loss"], "val_perplexity": metrics["perplexity"]})

    def close(self, step: int, last_metrics: dict[str, Any] | None) -> None:
        """Write what is left since the last line, close the file and draw the loss curve."""
        if last_metrics is not None:
            self._flush_steps(step, last_metrics)
        self._file.close()
        plot_loss_curve(self.path, self.run.loss_curve)

    def _write(self, line: dict[str, Any]) -> None:
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()  # a killed run keeps every line it wrote


def _keep_lines_up_to(path: Path, step: int) -> None:
    """Drop the lines after `step` (all of them for a fresh run), replacing the file atomically if any go.

    A line cut short by a kill is dropped too: it is always the last one, written after the last checkpoint.
    """
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    kept = [line for line in lines if _step_of_line(line) is not None and _step_of_line(line) <= step]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))


def _step_of_line(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def plot_loss_curve(metrics_path: Path, image_path: Path) -> None:
    """Draw training and validation loss against the step (matplotlib's Agg canvas: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r and math.isfinite(r["loss"])]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train, strict=True), label="train loss")
    if val:
        axes.plot(*zip(*val, strict=True), "o-", label="validation loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.grid(alpha=0.3)
    if train or val:
        axes.legend()
    figure.tight_layout()
    with atomic_target(image_path) as aside:
        figure.savefig(aside, format="png")


# One logger per running trainer; weak keys so a finished trainer takes its logger with it.
_loggers: weakref.WeakKeyDictionary[BaseTrainer, MetricsLogger] = weakref.WeakKeyDictionary()
_last_step_metrics: weakref.WeakKeyDictionary[BaseTrainer, dict[str, Any]] = weakref.WeakKeyDictionary()


def _wants_log(trainer: BaseTrainer) -> bool:
    return trainer.output_dir is not None and trainer.options.log_metrics and trainer.context.is_main


def on_train_begin(trainer: BaseTrainer) -> None:
    """Open the run's metrics file (keeping the lines up to the step a resumed run starts from)."""
    if _wants_log(trainer):
        _loggers[trainer] = MetricsLogger(
            trainer.output_dir, trainer.options.log_interval, trainer.progress.step, trainer.losses_before_resume
        )


def on_step_end(trainer: BaseTrainer, step: int, metrics: dict[str, Any]) -> None:
    """Record one optimizer step."""
    logger = _loggers.get(trainer)
    if logger is not None:
        logger.step(step, metrics)
        _last_step_metrics[trainer] = metrics


def on_evaluation_end(trainer: BaseTrainer, step: int, metrics: dict[str, Any]) -> None:
    """Record a validation result."""
    logger = _loggers.get(trainer)
    if logger is not None:
        logger.evaluation(step, metrics)


def on_train_end(trainer: BaseTrainer) -> None:
    """Close the metrics file and draw the loss curve."""
    logger = _loggers.pop(trainer, None)
    if logger is not None:
        logger.close(trainer.progress.step, _last_step_metrics.pop(trainer, None))
