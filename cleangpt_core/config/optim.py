"""Schemas of the built-in optimizers and learning-rate schedules: the single source of their defaults.

pydantic only, so registering these components never imports torch. An experiment config's ``optimizer:``
and ``schedule:`` sections are validated against them before any work starts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PositiveInt, model_validator

from cleangpt_core.config.base import StrictModel

# Where the schedule fields of an experiment's `trainer:` section went when the schedule became a component.
MOVED_SCHEDULE_FIELDS = {
    "lr_schedule": "name",
    "warmup_steps": "warmup_steps",
    "lr_decay_steps": "decay_steps",
    "min_lr_ratio": "min_lr_ratio",
}


def _check_betas(betas: tuple[float, float]) -> tuple[float, float]:
    if not all(0.0 <= beta < 1.0 for beta in betas):
        raise ValueError(f"betas must lie in [0, 1), got {betas}")
    return betas


Betas = Annotated[tuple[float, float], AfterValidator(_check_betas)]


class AdamWConfig(StrictModel):
    """AdamW (Loshchilov & Hutter, 2019), with weight decay on matrices and embeddings only."""

    lr: float = Field(1e-3, gt=0.0, description="peak learning rate")
    betas: Betas = Field((0.9, 0.99), description="decay rates of the first and second moments")
    eps: float = Field(1e-8, gt=0.0, description="denominator epsilon")
    weight_decay: float = Field(0.1, ge=0.0, description="decoupled weight decay of matrices, embeddings and head")


class SGDConfig(StrictModel):
    """Stochastic gradient descent with (Nesterov) momentum."""

    lr: float = Field(0.1, gt=0.0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="momentum coefficient; 0 is plain SGD")
    nesterov: bool = Field(True, description="Nesterov momentum (needs momentum > 0)")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 penalty on matrices, embeddings and head")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDConfig:
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=true needs momentum > 0; set momentum or nesterov=false")
        return self


class MuonConfig(StrictModel):
    """Muon (Jordan et al., 2024) for the hidden weight matrices, AdamW for everything else.

    Muon orthogonalises each matrix's momentum by Newton-Schulz iterations, so every direction of the update
    moves at the same rate; embeddings, the output head, gains and biases are not matrices of a linear map
    between hidden states and stay with AdamW, as in modded-nanogpt.
    """

    lr: float = Field(0.02, gt=0.0, description="Muon's peak learning rate for hidden matrices")
    momentum: float = Field(0.95, ge=0.0, lt=1.0, description="Muon's momentum")
    nesterov: bool = Field(True, description="Nesterov momentum for Muon")
    ns_steps: PositiveInt = Field(5, description="Newton-Schulz iterations that orthogonalise the update")
    weight_decay: float = Field(0.0, ge=0.0, description="Muon's decoupled weight decay of hidden matrices")
    adjust_lr: Literal["original", "match_rms_adamw"] = Field(
        "original",
        description="'original': lr x sqrt(max(1, rows/cols)) (Jordan); 'match_rms_adamw': 0.2 x sqrt(max(rows, "
        "cols)), so AdamW's learning rate carries over (Moonshot)",
    )
    adamw_lr: float = Field(3e-3, gt=0.0, description="AdamW's peak learning rate for embeddings, head, gains")
    adamw_betas: Betas = Field((0.9, 0.99), description="AdamW's moment decay rates")
    adamw_eps: float = Field(1e-8, gt=0.0, description="AdamW's denominator epsilon")
    adamw_weight_decay: float = Field(0.0, ge=0.0, description="AdamW's weight decay of embeddings and head")


def _steps_or_fraction(value: int | float) -> int | float:
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, float) and not 0.0 < value < 1.0:
        raise ValueError(f"give a whole number of steps or a fraction of the run between 0 and 1, not {value}")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"a number of steps cannot be negative, got {value}")
    return value


# A length in optimizer steps (an int), or a fraction of the run's length (a float between 0 and 1: 0.05 is 5%)
RunSteps = Annotated[int | float, AfterValidator(_steps_or_fraction)]


class ConstantScheduleConfig(StrictModel):
    """The optimizer's learning rate throughout, after an optional linear warmup."""

    warmup_steps: RunSteps = Field(
        0, description="linear warmup from 0 to the peak learning rate: steps, or a fraction of the run (0.05: 5%)"
    )


class CosineScheduleConfig(ConstantScheduleConfig):
    """Linear warmup, then cosine decay to a floor (nanoGPT's schedule)."""

    decay_steps: RunSteps | None = Field(
        None, description="step the cosine reaches its floor, or a fraction of the run; default: the run's end"
    )
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="the floor, as a fraction of the peak lr")

    @model_validator(mode="after")
    def _decay_takes_steps(self) -> CosineScheduleConfig:
        if self.decay_steps == 0:
            raise ValueError(
                "decay_steps must be at least 1 step (or a fraction of the run); leave it unset to decay until the "
                "run's end"
            )
        return self


class WSDScheduleConfig(ConstantScheduleConfig):
    """Warmup-stable-decay (trapezoidal): warmup, the peak held, then a linear cool-down over the last steps."""

    decay_fraction: float = Field(0.2, gt=0.0, le=1.0, description="fraction of the run spent cooling down")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="where the cool-down ends, as a fraction of peak")


class LinearScheduleConfig(ConstantScheduleConfig):
    """Linear warmup, then a straight line from the peak down to a floor at the last step."""

    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="the floor, as a fraction of the peak lr")
