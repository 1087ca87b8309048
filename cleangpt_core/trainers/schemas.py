"""Option schemas of the built-in trainers (pydantic only, so registering them never imports torch).

`get_trainer(..., **options)` validates its keyword options against these before building anything, and an
experiment config's ``trainer:`` section is checked against the same schema when the config loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from cleangpt_core.config.base import MAX_SEED, StrictModel
from cleangpt_core.config.optim import MOVED_SCHEDULE_FIELDS


class TrainerConfig(StrictModel):
    """What every built-in trainer understands: the budget, the run directory and the cadence of its work.

    The learning-rate schedule is no trainer option: it is a component of its own (``schedule:`` in an
    experiment config, ``lr_scheduler=`` here), which every built-in trainer steps once per optimizer step.
    """

    num_epochs: PositiveInt = Field(1, description="passes over the training data (max_steps may stop earlier)")
    max_steps: PositiveInt | None = Field(None, description="stop after this many optimizer steps")
    gradient_accumulation_steps: PositiveInt = Field(
        1, description="batches whose gradients add up to one optimizer step (same result as one big batch)"
    )
    output_dir: Path | None = Field(None, description="run directory for checkpoints and metrics; None writes nothing")
    seed: int = Field(
        1337, ge=0, le=MAX_SEED, description="seeds the data order, a function of (seed, epoch) so resumes are exact"
    )
    log_interval: PositiveInt = Field(10, description="optimizer steps between two metrics lines")
    checkpoint_interval: PositiveInt | None = Field(
        None, description="optimizer steps between checkpoints; one is always written at the end of training"
    )
    keep_checkpoints: PositiveInt = Field(3, description="most recent checkpoints kept, besides the best one")
    eval_interval: PositiveInt | None = Field(
        None, description="optimizer steps between evaluations on eval_dataloader; None evaluates only at the end"
    )
    eval_max_batches: PositiveInt | None = Field(
        None, description="estimate the periodic validation loss on this many batches; None uses all of them"
    )
    progress_bar: bool | None = Field(None, description="show a tqdm bar; None shows it only on a terminal")
    log_metrics: bool = Field(True, description="write metrics.jsonl and loss_curve.png into output_dir")
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto",
        description="under torchrun: 'ddp' replicates the model, 'fsdp' shards it (FSDP2); 'auto' takes ddp "
        "unless the replicas would not fit the GPU (one process trains the model as it is)",
    )
    activation_checkpointing: bool = Field(
        False, description="recompute each block's activations in the backward pass: less memory, ~1/3 more compute"
    )
    compile: bool = Field(
        False, description="torch.compile the model (a one-off compilation cost at the first steps; see benchmarks/)"
    )
    fsdp_param_dtype: Literal["auto", "fp32"] = Field(
        "auto",
        description="under strategy 'fsdp': the dtype each block's weights are gathered and its gradients computed "
        "in; 'auto': bf16 when the run computes in bf16 autocast (half the traffic), else fp32",
    )
    fsdp_reduce_dtype: Literal["fp32", "bf16"] = Field(
        "fp32", description="under strategy 'fsdp': the dtype gradients are summed across processes in"
    )

    @model_validator(mode="before")
    @classmethod
    def _schedule_moved(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        moved = [key for key in MOVED_SCHEDULE_FIELDS if key in data]
        if moved:
            raise ValueError(
                f"{', '.join(moved)}: the learning-rate schedule is no trainer option any more; pass "
                "lr_scheduler=get_schedule('cosine', warmup_steps=..., ...) (cleangpt_core.trainers), or set the "
                "experiment config's schedule: section"
            )
        return data


class SimpleTrainerConfig(TrainerConfig):
    """The plain loop: a batch (or `gradient_accumulation_steps` of them) per optimizer step, at the optimizer's
    own learning rate."""


class AdvancedTrainerConfig(TrainerConfig):
    """The plain loop plus the tools of a serious run, each off unless asked for (mixed precision: where it is
    faster)."""

    mixed_precision: bool | Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="'auto': bf16 autocast where the device computes in bf16 natively (a CPU with AVX512-BF16, AMX "
        "or Arm BF16; a GPU with bf16 tensor cores), else full precision; True picks bf16 (fp16 on GPUs without "
        "bf16); fp16 uses a gradient scaler and needs CUDA",
    )
    grad_clip: float | None = Field(None, gt=0.0, description="clip the global gradient norm to this value")
    early_stopping_patience: PositiveInt | None = Field(
        None, description="stop after this many evaluations without improving the validation loss"
    )
    early_stopping_min_delta: float = Field(0.0, ge=0.0, description="smallest drop in validation loss that counts")
    average_last_checkpoints: PositiveInt = Field(
        1, description="at the end, average the weights of the last N checkpoints (1 turns averaging off)"
    )

    @model_validator(mode="after")
    def _averaging_needs_checkpoints(self) -> AdvancedTrainerConfig:
        if self.average_last_checkpoints > self.keep_checkpoints:
            raise ValueError(
                f"average_last_checkpoints={self.average_last_checkpoints} needs keep_checkpoints >= "
                f"{self.average_last_checkpoints} (it is {self.keep_checkpoints})"
            )
        if self.average_last_checkpoints > 1 and self.checkpoint_interval is None:
            raise ValueError("average_last_checkpoints > 1 needs checkpoint_interval, so there is more than one")
        return self
