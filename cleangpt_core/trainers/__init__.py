"""Trainers: the simple and advanced loops, checkpoints that resume exactly, events, `get_trainer`, and
`get_optimizer` / `get_schedule` for the registered optimizers and learning-rate schedules.

The names below are imported on first use (PEP 562), so that the plugin registry can read the pydantic
option schemas in ``cleangpt_core.trainers.schemas`` without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cleangpt_core.errors import CheckpointWriteError, TrainingDivergedError
from cleangpt_core.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from cleangpt_core.trainers.advanced_trainer import AdvancedTrainer
    from cleangpt_core.trainers.base_trainer import BaseTrainer
    from cleangpt_core.trainers.factory import get_trainer
    from cleangpt_core.trainers.optim_factory import get_optimizer, get_schedule
    from cleangpt_core.trainers.simple_trainer import SimpleTrainer
    from cleangpt_core.trainers.training_checkpoint import CheckpointManager

_EXPORTS = {
    "AdvancedTrainer": "cleangpt_core.trainers.advanced_trainer",
    "BaseTrainer": "cleangpt_core.trainers.base_trainer",
    "CheckpointManager": "cleangpt_core.trainers.training_checkpoint",
    "SimpleTrainer": "cleangpt_core.trainers.simple_trainer",
    "get_trainer": "cleangpt_core.trainers.factory",
    "get_optimizer": "cleangpt_core.trainers.optim_factory",
    "get_schedule": "cleangpt_core.trainers.optim_factory",
}

__all__ = [
    "AdvancedTrainer",
    "BaseTrainer",
    "CheckpointManager",
    "CheckpointWriteError",
    "SimpleTrainer",
    "TrainingDivergedError",
    "get_optimizer",
    "get_schedule",
    "get_trainer",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
