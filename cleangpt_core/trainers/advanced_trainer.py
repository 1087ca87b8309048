"""`AdvancedTrainer`: the plain loop plus mixed precision, gradient clipping, early stopping on validation loss
and averaging of the last checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import safetensors.torch
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from cleangpt_core.checkpoints.atomic_write import atomic_target
from cleangpt_core.checkpoints.run_dir import MODEL_WEIGHTS_FILE
from cleangpt_core.distributed.process_group import barrier
from cleangpt_core.distributed.strategies import (
    GatheredModel,
    full_model_state,
    gradient_scaler,
    load_checkpoint_weights,
)
from cleangpt_core.errors import CheckpointError
from cleangpt_core.trainers.base_trainer import ScheduleBuilder
from cleangpt_core.trainers.precision import PRECISION_NAMES, describe_precision, precision_name, resolve_precision
from cleangpt_core.trainers.schemas import AdvancedTrainerConfig, TrainerConfig
from cleangpt_core.trainers.simple_trainer import SimpleTrainer
from cleangpt_core.trainers.training_checkpoint import (
    CheckpointManager,
    average_weights,
    write_model,
)

logger = logging.getLogger(__name__)


class AdvancedTrainer(SimpleTrainer):
    """The tutorial's advanced trainer: every feature is an option, off unless asked for, except mixed
    precision, which by default (``"auto"``) is bf16 autocast where the device computes bf16 natively.

    `lr_scheduler` is any torch scheduler, or a schedule to build (``get_schedule("cosine", warmup_steps=100)``),
    stepped once per optimizer step.
    """

    options_schema: ClassVar[type[TrainerConfig]] = AdvancedTrainerConfig

    def __init__(
        self,
        model: nn.Module,
        dataloader: Any,
        optimizer: torch.optim.Optimizer,
        device: str | torch.device | None = None,
        output_dir: str | Path | None = None,
        lr_scheduler: LRScheduler | ScheduleBuilder | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, dataloader, optimizer, device, output_dir, lr_scheduler=lr_scheduler, **options)
        self._train_in(self.precision)

    def training_precision(self) -> torch.dtype | None:
        """The `mixed_precision` option resolved for the device (``auto``: bf16 where it is native)."""
        return resolve_precision(self.options.mixed_precision, self.device)

    def _train_in(self, precision: torch.dtype | None) -> None:
        self.precision = precision
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none
        self.scaler = gradient_scaler(self.strategy, self.device) if precision == torch.float16 else None

    def backward(self, loss: torch.Tensor) -> None:
        """Backward through the gradient scaler when training in fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def update_weights(self) -> None:
        """Unscale, clip, then step (skipped by the scaler on overflow)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        if self.options.grad_clip is not None:
            # kept on the device: read back only when a logging step or a receiver asks for it
            self._grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def after_evaluation(self, val_loss: float) -> None:
        """Count evaluations without improvement and stop after `early_stopping_patience` of them."""
        best = self.progress.best_val_loss
        if best is None or val_loss < best - self.options.early_stopping_min_delta:
            self.progress.evals_without_improvement = 0
        else:
            self.progress.evals_without_improvement += 1
        super().after_evaluation(val_loss)
        patience = self.options.early_stopping_patience
        if patience is not None and self.progress.evals_without_improvement >= patience:
            self.request_stop(
                f"early stopping: validation loss did not improve on {self.progress.best_val_loss:.4f} "
                f"for {patience} evaluation(s)"
            )

    def trainer_state(self) -> dict[str, Any]:
        """The base state plus the gradient scaler."""
        state = super().trainer_state()
        state["grad_scaler"] = self.scaler.state_dict() if self.scaler is not None else None
        return state

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        """Restore the base state, the precision the run trained in and the gradient scaler."""
        self._continue_precision(state.get("mixed_precision"))
        super().load_trainer_state(state)
        if self.scaler is not None and state.get("grad_scaler") is not None:
            self.scaler.load_state_dict(state["grad_scaler"])

    def _continue_precision(self, recorded: str | None) -> None:
        """Continue a resumed run in the precision it trained in, when the option leaves the choice to us.

        "auto" resolves by the device, and a run may resume on another one (or, recorded None, was saved before
        the record existed, when the default was full precision): it keeps the recorded precision, so that a run
        never changes precision midway. An explicit option is obeyed, with a warning when it differs.
        """
        if recorded is not None and recorded not in PRECISION_NAMES:
            raise CheckpointError(
                f"the checkpoint's trainer state records mixed_precision={recorded!r}, not one of "
                f"{', '.join(map(repr, PRECISION_NAMES))}; it is damaged"
            )
        option = self.options.mixed_precision
        if option != "auto":
            if recorded is not None and recorded != precision_name(self.precision) and self.context.is_main:
                logger.warning(
                    "the resumed run trained with mixed_precision=%r; it continues in %s (mixed_precision=%r), so "
                    "it will not end as an uninterrupted run would have",
                    recorded,
                    describe_precision(self.precision),
                    option,
                )
            return
        kept = resolve_precision(recorded or "no", self.device)
        if kept != self.precision and self.context.is_main:
            logger.warning(
                "the resumed run trained in %s%s; it continues so (mixed_precision='auto' would choose %s here)",
                describe_precision(kept),
                "" if recorded is not None else " (saved before mixed_precision='auto' was the default)",
                describe_precision(self.precision),
            )
        self._train_in(kept)

    def _finish(self, elapsed: float, tokens: int) -> dict[str, Any]:
        stats = super()._finish(elapsed, tokens)
        count = self.options.average_last_checkpoints
        if count > 1 and self.checkpoints is not None and self.losses:  # not again for a finished run resumed
            stats.update(self._average_checkpoints(self.checkpoints, count))
        return stats

    def _average_checkpoints(self, checkpoints: CheckpointManager, count: int) -> dict[str, Any]:
        """Load the mean of the last `count` checkpoints' weights, saved as ``<run>/averaged/`` (a model dir)."""
        chosen = checkpoints.checkpoints()[-count:]
        target = checkpoints.run.averaged
        if self.context.is_main:
            target.mkdir(parents=True, exist_ok=True)
            with atomic_target(target / MODEL_WEIGHTS_FILE) as aside:
                safetensors.torch.save_file(average_weights(chosen), str(aside), metadata={"format": "pt"})
        barrier(self.context)
        load_checkpoint_weights(self.raw_model, target)
        weights = full_model_state(self.raw_model)  # collective under FSDP
        if self.context.is_main:  # rewritten through the model so the directory gets its config.json too
            write_model(GatheredModel(self.raw_model, weights), target)
            self._write_extras(target)
        result: dict[str, Any] = {"averaged_checkpoints": [str(path) for path in chosen], "averaged_model": str(target)}
        if self.eval_dataloader is not None:
            result["averaged_val_loss"] = self.measure()["loss"]
        return result
