"""Learning-rate schedules as torch schedulers, so a caller's scheduler and ours are driven the same way.

Each schedule is a multiplier of every parameter group's peak learning rate as a function of the optimizer
step (0-based: step s trains at peak x multiplier(s)), wrapped in `LambdaLR`. The multipliers are classes
rather than closures because `LambdaLR.state_dict` saves a callable object's attributes, so a schedule
travels with a checkpoint as plain numbers. A schedule component is a function
``build(optimizer, *, total_steps, **options) -> LRScheduler``.

Lengths are stated in steps or relative to the run: a warm-up (or a cosine's `decay_steps`) given as a
fraction between 0 and 1 is that share of the run's `total_steps`, rounded to whole steps, so a recipe's
``warmup_steps: 0.05`` fits a 40-step fine-tune and a 20,000-step run alike.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from cleangpt_core.errors import ConfigError


class Warmup:
    """Linear warmup over the first `warmup_steps` steps, then the peak; subclasses shape what follows."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return self.after_warmup(step)

    def after_warmup(self, step: int) -> float:
        """The multiplier at a step past the warmup."""
        return 1.0


class WarmupCosine(Warmup):
    """Warmup, cosine decay until `decay_steps`, then a constant floor (nanoGPT's)."""

    def __init__(self, warmup_steps: int, decay_steps: int, min_ratio: float) -> None:
        super().__init__(warmup_steps)
        self.decay_steps = decay_steps
        self.min_ratio = min_ratio

    def after_warmup(self, step: int) -> float:
        if step >= self.decay_steps:
            return self.min_ratio
        progress = (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps)
        return self.min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - self.min_ratio)


class LinearDecay(Warmup):
    """Warmup, then a straight line from the peak at `start` to `min_ratio` at `end` (and the floor after)."""

    def __init__(self, warmup_steps: int, start: int, end: int, min_ratio: float) -> None:
        super().__init__(warmup_steps)
        self.start = start
        self.end = end
        self.min_ratio = min_ratio

    def after_warmup(self, step: int) -> float:
        if step < self.start:
            return 1.0
        progress = min(1.0, (step - self.start) / (self.end - self.start))
        return 1.0 - progress * (1.0 - self.min_ratio)


def _run_length(name: str, total_steps: int | None) -> int:
    if total_steps is None:
        raise ConfigError(
            f"schedule {name!r} is stated relative to the run's length, which is unknown (the data has no length); "
            "set trainer.max_steps"
        )
    return total_steps


def run_steps(name: str, option: str, value: int | float, total_steps: int | None) -> int:
    """`value` steps, or a fraction of the run (a float between 0 and 1) as whole steps of `total_steps`."""
    if isinstance(value, float) and not value.is_integer():
        if not 0.0 < value < 1.0:
            raise ConfigError(
                f"schedule {name!r}: {option}={value} is neither a whole number of steps nor a fraction of the run "
                "between 0 and 1"
            )
        return round(value * _run_length(name, total_steps))
    return int(value)


def _check_warmup(name: str, warmup_steps: int, room: int) -> None:
    if warmup_steps >= room:
        raise ConfigError(
            f"schedule {name!r}: warmup_steps={warmup_steps} leaves no room to decay within {room} steps; "
            "lower warmup_steps (or give it as a fraction of the run, e.g. 0.05), or train for more steps"
        )


def constant_schedule(
    optimizer: torch.optim.Optimizer, *, total_steps: int | None, warmup_steps: int | float = 0
) -> LambdaLR:
    """The peak learning rate throughout, after an optional linear warmup (steps, or a fraction of the run)."""
    return LambdaLR(optimizer, Warmup(run_steps("constant", "warmup_steps", warmup_steps, total_steps)))


def cosine_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int | None,
    warmup_steps: int | float = 0,
    decay_steps: int | float | None = None,
    min_lr_ratio: float = 0.1,
) -> LambdaLR:
    """Warmup, then cosine decay to `min_lr_ratio` x peak at `decay_steps` (default: the end of the run); either
    length in steps or as a fraction of the run."""
    warmup = run_steps("cosine", "warmup_steps", warmup_steps, total_steps)
    if decay_steps is None:
        decay = _run_length("cosine", total_steps)
    else:
        decay = run_steps("cosine", "decay_steps", decay_steps, total_steps)
    _check_warmup("cosine", warmup, decay)
    return LambdaLR(optimizer, WarmupCosine(warmup, decay, min_lr_ratio))


def wsd_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int | None,
    warmup_steps: int | float = 0,
    decay_fraction: float = 0.2,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Warmup-stable-decay: warmup (steps, or a fraction of the run), the peak held, then a linear cool-down over
    the last `decay_fraction` of the run.

    The cool-down ends at `min_lr_ratio` x peak one step after the last (so with 0 the last step trains at
    peak / cool-down length, as in modded-nanogpt, rather than wasting a step at zero).
    """
    total_steps = _run_length("wsd", total_steps)
    warmup = run_steps("wsd", "warmup_steps", warmup_steps, total_steps)
    decay_start = total_steps - max(1, round(decay_fraction * total_steps))
    _check_warmup("wsd", warmup, decay_start + 1)
    return LambdaLR(optimizer, LinearDecay(warmup, decay_start, total_steps, min_lr_ratio))


def linear_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int | None,
    warmup_steps: int | float = 0,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Warmup (steps, or a fraction of the run), then linear decay from the peak to `min_lr_ratio` x peak one step
    after the last."""
    total_steps = _run_length("linear", total_steps)
    warmup = run_steps("linear", "warmup_steps", warmup_steps, total_steps)
    _check_warmup("linear", warmup, total_steps)
    return LambdaLR(optimizer, LinearDecay(warmup, warmup, total_steps, min_lr_ratio))
