"""`get_trainer`: build a registered trainer by name, its options checked before any work starts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from cleangpt_core.config.base import validate_config
from cleangpt_core.registry import get_component
from cleangpt_core.trainers.base_trainer import BaseTrainer

# Objects a trainer takes besides its configurable options: they are passed through, never validated.
RUNTIME_ARGUMENTS = ("lr_scheduler", "eval_dataloader", "callbacks", "tokenizer", "experiment")


def get_trainer(
    trainer_type: str,
    model: nn.Module,
    dataloader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    device: str | torch.device | None = None,
    num_epochs: int | None = None,
    **options: Any,
) -> BaseTrainer:
    """The trainer registered as `trainer_type` ("simple", "advanced" or a plugin's), ready to `train()`.

    `options` are the trainer's schema fields (see ``cleangpt show-config advanced``) plus the objects in
    `RUNTIME_ARGUMENTS`. `device` None picks CUDA, then MPS, then the CPU.
    """
    component = get_component("trainer", trainer_type)
    runtime = {name: options.pop(name) for name in RUNTIME_ARGUMENTS if name in options}
    if num_epochs is not None:
        options["num_epochs"] = num_epochs
    if component.config_schema is not None:
        validated = validate_config(component.config_schema, options, f"options of trainer {component.name!r}")
        options = {name: getattr(validated, name) for name in options}  # only what was given: defaults stay
    trainer_class = component.load()
    return trainer_class(model, dataloader, optimizer, device, **options, **runtime)
