"""`get_trainer`: build a registered trainer by name, its options checked before any work starts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from cleangpt_core.registry import get_component
from cleangpt_core.trainers.base_trainer import BaseTrainer


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

    `options` are the trainer's schema fields (see ``cleangpt show-config advanced``) plus the objects its
    constructor takes besides them (``lr_scheduler``, ``eval_dataloader``, ``callbacks``, ``tokenizer``,
    ``experiment``). `device` None picks CUDA, then MPS, then the CPU.
    """
    if num_epochs is not None:
        options["num_epochs"] = num_epochs
    # the trainer validates its options against its schema first thing, before any work
    return get_component("trainer", trainer_type).load()(model, dataloader, optimizer, device, **options)
