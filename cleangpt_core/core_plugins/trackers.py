"""Registers the experiment trackers (TensorBoard, MLflow, W&B) on the training events.

A run reports to the trackers its ``logging.report_to`` names; the hooks below forward to
``cleangpt_core.experiments.trackers.events``, imported only once a run has started (this module imports no torch and
none of the trackers' packages).
"""

from __future__ import annotations

from typing import Any

from cleangpt_core.plugin_api import PLUGIN_API_VERSION, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def cleangpt_on_train_begin(trainer: Any) -> None:
    """Open the run's trackers."""
    from cleangpt_core.experiments.trackers import events

    events.on_train_begin(trainer)


@hookimpl
def cleangpt_on_step_end(trainer: Any, step: int, metrics: dict[str, Any]) -> None:
    """Report a step."""
    from cleangpt_core.experiments.trackers import events

    events.on_step_end(trainer, step, metrics)


@hookimpl
def cleangpt_on_evaluation_end(trainer: Any, step: int, metrics: dict[str, Any]) -> None:
    """Report a validation result."""
    from cleangpt_core.experiments.trackers import events

    events.on_evaluation_end(trainer, step, metrics)


@hookimpl
def cleangpt_on_checkpoint_saved(trainer: Any) -> None:
    """Deliver the steps this checkpoint holds."""
    from cleangpt_core.experiments.trackers import events

    events.on_checkpoint_saved(trainer)


@hookimpl
def cleangpt_on_train_end(trainer: Any, stats: dict[str, Any]) -> None:
    """Close the trackers."""
    from cleangpt_core.experiments.trackers import events

    events.on_train_end(trainer, stats)
