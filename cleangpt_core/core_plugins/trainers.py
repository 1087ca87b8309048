"""Registers the built-in trainers, the ``train`` and ``evaluate`` commands, and the metrics logger.

The metrics logger is a training-event plugin like any other: the hooks below forward to
``cleangpt_core.trainers.metrics``, imported only once a run has started (this module imports no torch).
"""

from __future__ import annotations

from typing import Any

from cleangpt_core.plugin_api import PLUGIN_API_VERSION, CommandSpec, Component, hookimpl
from cleangpt_core.trainers import schemas

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def cleangpt_register_trainers() -> list[Component]:
    """The simple and advanced trainers."""
    return [
        Component(
            name="simple",
            kind="trainer",
            summary="plain loop: one batch per optimizer step, checkpoints, resumable",
            target="cleangpt_core.trainers.simple_trainer:SimpleTrainer",
            config_schema=schemas.SimpleTrainerConfig,
        ),
        Component(
            name="advanced",
            kind="trainer",
            summary="accumulation, mixed precision, warmup+cosine, clipping, early stopping, averaging",
            target="cleangpt_core.trainers.advanced_trainer:AdvancedTrainer",
            config_schema=schemas.AdvancedTrainerConfig,
        ),
    ]


@hookimpl
def cleangpt_register_commands() -> list[CommandSpec]:
    """train, evaluate and runs."""
    return [
        CommandSpec(
            "train", "Train a model from an experiment config (or resume a run).", "cleangpt_core.cli.train:train"
        ),
        CommandSpec(
            "evaluate", "Report a checkpoint's loss and perplexity on data.", "cleangpt_core.cli.train:evaluate"
        ),
        CommandSpec(
            "runs",
            "List the runs and comparisons under a folder: state, steps, validation loss, what differs.",
            "cleangpt_core.cli.runs:runs",
        ),
    ]


@hookimpl
def cleangpt_on_train_begin(trainer: Any) -> None:
    """Open the run's metrics.jsonl."""
    from cleangpt_core.trainers import metrics

    metrics.on_train_begin(trainer)


@hookimpl
def cleangpt_on_step_end(trainer: Any, step: int, metrics: dict[str, Any]) -> None:
    """Log one step."""
    from cleangpt_core.trainers import metrics as metrics_logger

    metrics_logger.on_step_end(trainer, step, metrics)


@hookimpl
def cleangpt_on_evaluation_end(trainer: Any, step: int, metrics: dict[str, Any]) -> None:
    """Log a validation result."""
    from cleangpt_core.trainers import metrics as metrics_logger

    metrics_logger.on_evaluation_end(trainer, step, metrics)


@hookimpl
def cleangpt_on_train_end(trainer: Any) -> None:
    """Close metrics.jsonl and draw loss_curve.png."""
    from cleangpt_core.trainers import metrics

    metrics.on_train_end(trainer)
