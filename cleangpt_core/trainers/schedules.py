"""Learning-rate schedules as torch schedulers, so a caller's scheduler and ours are driven the same way."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """Multiplier of the peak learning rate: linear warmup, cosine decay, then a constant floor (nanoGPT's).

    A class rather than a closure because `LambdaLR.state_dict` saves a callable object's attributes, so the
    schedule travels with a checkpoint as plain numbers.
    """

    def __init__(self, warmup_steps: int, decay_steps: int, min_ratio: float) -> None:
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if step >= self.decay_steps:
            return self.min_ratio
        progress = (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps)
        return self.min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - self.min_ratio)


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, decay_steps: int, min_ratio: float = 0.1
) -> LambdaLR:
    """A scheduler stepping once per optimizer step: warmup to each group's lr, cosine down to min_ratio x it."""
    if decay_steps <= warmup_steps:
        raise ValueError(f"decay_steps={decay_steps} must exceed warmup_steps={warmup_steps}")
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, decay_steps, min_ratio))
