"""`BaseTrainer`: what every trainer shares, so a new training strategy only writes its loop.

It owns the plumbing a loop should not repeat: the device, joining a torchrun process group, the resumable
batch order, exact evaluation, checkpoints that resume bit for bit, and the training events. A subclass
implements `train()` (and may override `evaluate()`), as the tutorial's custom trainers do.

Randomness under torchrun: every process builds the same model from the run's seed, then seeds its own torch
generators from (seed, rank), so that dropout masks differ between processes as they would between the
samples of one big batch; the data order is a function of (seed, epoch) alone (`EpochBatches`), the same on
any number of processes. Each process's generators are checkpointed apart and restored into it.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy
from torch.optim.lr_scheduler import LRScheduler

from cleangpt_core.checkpoints.atomic_write import write_text_atomic
from cleangpt_core.checkpoints.run_dir import EXPERIMENT_FILE, TOKENIZER_DIR, RunDirectory, find_training_checkpoint
from cleangpt_core.checkpoints.sharded import (
    MODEL_PREFIX,
    check_supported,
    has_shards,
    read_shards,
    shard_shapes,
    write_shards,
)
from cleangpt_core.config.base import validate_config
from cleangpt_core.distributed.devices import choose_device
from cleangpt_core.distributed.process_group import init_distributed
from cleangpt_core.distributed.strategies import (
    GatheredModel,
    choose_strategy,
    fsdp_precision,
    full_model_state,
    full_optimizer_state,
    load_checkpoint_weights,
    load_full_optimizer_state,
    load_sharded_model_state,
    load_sharded_optimizer_state,
    prepare_model,
    sharded_model_state,
    sharded_optimizer_state,
)
from cleangpt_core.errors import CheckpointError
from cleangpt_core.kernels import choices_made, use_recorded
from cleangpt_core.trainers.batches import Batch, EpochBatches
from cleangpt_core.trainers.evaluation import batch_to, evaluate_model
from cleangpt_core.trainers.events import TrainingEvents
from cleangpt_core.trainers.precision import precision_name
from cleangpt_core.trainers.schemas import TrainerConfig
from cleangpt_core.trainers.training_checkpoint import (
    STATE_PREFIX,
    CheckpointManager,
    capture_rng_state,
    flatten_state,
    read_rng_state,
    read_state,
    read_state_structure,
    restore_rng_state,
    tensor_paths,
    unflatten_state,
    unwrap_model,
    write_model,
    write_model_config,
    write_rng_state,
    write_state,
    write_state_structure,
)

logger = logging.getLogger(__name__)

# A schedule not yet built: called with the optimizer and the run's length in optimizer steps (None if unknown).
ScheduleBuilder = Callable[[torch.optim.Optimizer, "int | None"], LRScheduler]


@dataclass
class TrainingProgress:
    """Where a run is: everything besides tensors that a resumed run needs to continue exactly."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    tokens: int = 0  # input tokens seen, all processes together
    best_val_loss: float | None = None
    evals_without_improvement: int = 0


class BaseTrainer(ABC):
    """A training strategy for a causal language model.

    Batches are dicts with ``input_ids``, ``labels`` (aligned with the inputs; the model shifts them) and
    optionally ``attention_mask``; ``model(**batch)`` returns a dict with ``loss`` and ``logits``. Options
    are validated against `options_schema` before any work starts.

    `lr_scheduler` is a torch scheduler over `optimizer`, or a `ScheduleBuilder` (``get_schedule("wsd", ...)``)
    that the trainer calls with the optimizer and `total_steps()`, so a schedule stated relative to the run
    fits whatever length the run has. The loop steps it once per optimizer step; its state is checkpointed.
    """

    options_schema: ClassVar[type[TrainerConfig]] = TrainerConfig
    precision: torch.dtype | None = None  # the autocast dtype of forward passes; None: full precision

    def __init__(
        self,
        model: nn.Module,
        dataloader: Iterable[Batch],
        optimizer: torch.optim.Optimizer,
        device: str | torch.device | None = None,
        output_dir: str | Path | None = None,
        *,
        eval_dataloader: Iterable[Batch] | None = None,
        callbacks: Iterable[object] = (),
        tokenizer: Any = None,
        experiment: Any = None,
        lr_scheduler: LRScheduler | ScheduleBuilder | None = None,
        **options: Any,
    ) -> None:
        self.options = validate_config(
            self.options_schema, {"output_dir": output_dir, **options}, f"options of {type(self).__name__}"
        )
        self.num_epochs = self.options.num_epochs
        self.output_dir = self.options.output_dir
        self.device = choose_device(device)
        self.context = init_distributed(self.device)
        size = sum(parameter.numel() for parameter in model.parameters())
        self.strategy = choose_strategy(self.options.strategy, self.context, self.device, size)
        if self.strategy == "fsdp" and self.output_dir is not None:
            check_supported()
        self.precision = self.training_precision()
        policy = self._fsdp_policy() if self.strategy == "fsdp" else None
        self._gather_dtype = policy.param_dtype if policy is not None else None  # fixed once the model is sharded
        self.model = prepare_model(
            model,
            self.strategy,
            self.device,
            optimizer=optimizer,
            activation_checkpointing=self.options.activation_checkpointing,
            compile_model=self.options.compile,
            mp_policy=policy,
        )
        if self.context.enabled:  # the same model everywhere; from here on, each process draws its own dropout
            torch.manual_seed(rank_seed(self.options.seed, self.context.rank))
        self.dataloader = dataloader
        self.eval_dataloader = eval_dataloader
        self.optimizer = optimizer
        self.callbacks = list(callbacks)
        self.tokenizer = tokenizer  # saved into every checkpoint when given, so it is self-contained
        self.experiment = experiment  # an ExperimentConfig, saved as experiment.json when given
        self.progress = TrainingProgress()
        self.batches = EpochBatches(
            dataloader, seed=self.options.seed, context=self.context, pin_memory=self.device.type == "cuda"
        )
        self.checkpoints = (
            CheckpointManager(self.output_dir, keep_last=self.options.keep_checkpoints) if self.output_dir else None
        )
        self.stop_reason: str | None = None
        self._events: TrainingEvents | None = None
        self._rng_to_restore: dict[str, Any] | None = None
        self._torch_seed_to_restore: int | None = None
        self._resumed_from: Path | None = None
        # the losses of the steps after the last metrics line, as the checkpoint this run resumed from recorded
        # them: the metrics logger averages them into its first line, as a run that never stopped would
        self.losses_before_resume: list[float] = []
        if lr_scheduler is not None and not isinstance(lr_scheduler, LRScheduler):
            lr_scheduler = lr_scheduler(self.optimizer, self.total_steps())
        self.lr_scheduler = lr_scheduler

    def training_precision(self) -> torch.dtype | None:
        """The autocast dtype this trainer computes in (None: full precision), known before the model is
        prepared, since FSDP2 gathers the weights of a bf16 run in bf16 (`fsdp_precision`)."""
        return type(self).precision

    def _fsdp_policy(self) -> MixedPrecisionPolicy:
        return fsdp_precision(self.options.fsdp_param_dtype, self.options.fsdp_reduce_dtype, self.precision)

    def total_steps(self) -> int | None:
        """Optimizer steps the whole run takes, when the data has a length or max_steps is set."""
        try:
            per_epoch = math.ceil(len(self.batches) / self.options.gradient_accumulation_steps)
        except TypeError:  # an iterable without a length
            return self.options.max_steps
        planned = per_epoch * self.num_epochs
        return min(planned, self.options.max_steps) if self.options.max_steps else planned

    @property
    def raw_model(self) -> nn.Module:
        """The model itself, without a DistributedDataParallel wrapper (sharded in place under FSDP)."""
        return unwrap_model(self.model)

    @property
    def events(self) -> TrainingEvents:
        """The receivers of this trainer's training events (plugins and callbacks)."""
        if self._events is None:
            self._events = TrainingEvents(self.callbacks)
        return self._events

    @abstractmethod
    def train(self) -> dict[str, Any]:
        """Train and return statistics about the run."""

    def run_lock(self) -> AbstractContextManager[None]:
        """The lock of the run directory, held by the main process while it trains (a no-op without one)."""
        if self.output_dir is None or not self.context.is_main:
            return nullcontext()
        return RunDirectory(self.output_dir).lock()

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (a callback or early stopping may call it)."""
        self.stop_reason = reason

    def autocast(self) -> AbstractContextManager[Any]:
        """The precision context of forward passes, training and evaluation alike: autocast to `precision`."""
        if self.precision is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision)

    def evaluate(
        self, eval_dataloader: Iterable[Batch] | None = None, max_batches: int | None = None
    ) -> dict[str, Any]:
        """Mean cross-entropy and perplexity over every predicted token of the data, each counted once.

        Returns ``loss``, ``perplexity`` (``exp(loss)``) and ``tokens``; see `evaluate_model`.
        """
        loader = eval_dataloader if eval_dataloader is not None else self.eval_dataloader
        if loader is None:
            raise ValueError("evaluate() needs an eval_dataloader (pass one here or to the trainer)")
        self.events.emit("evaluation_begin", trainer=self, step=self.progress.step)
        metrics = self._score(loader, max_batches)
        self.events.emit("evaluation_end", trainer=self, step=self.progress.step, metrics=metrics)
        return metrics

    def measure(self, max_batches: int | None = None) -> dict[str, Any]:
        """What `evaluate` computes, without telling observers: for numbers that are no step of the run's
        history (an averaged model, a finished run resumed), so metrics and trackers never get a second row."""
        if self.eval_dataloader is None:
            raise ValueError("measure() needs the trainer's eval_dataloader")
        return self._score(self.eval_dataloader, max_batches)

    def _score(self, loader: Iterable[Batch], max_batches: int | None) -> dict[str, Any]:
        return evaluate_model(
            self.model,
            loader,
            self.device,
            context=self.context,
            autocast=self.autocast(),
            max_batches=max_batches,
            lockstep=self.strategy == "fsdp",  # sharded: every rank joins every forward, also past its last batch
        )

    def to_device(self, batch: Batch) -> Batch:
        """The batch with its tensors on the training device, labels filled in from the inputs if absent."""
        return batch_to(batch, self.device)

    # -- checkpoints ------------------------------------------------------------------------------------

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights and random generators that resuming needs; subclasses add their parts.

        Every process calls it. Unsharded, the optimizer state is gathered whole (numbered as torch's
        ``state_dict()`` numbers it) for rank 0 to write; sharded (FSDP2), it is each process's own shards by
        parameter name, which every process writes itself. Either form resumes under any strategy and number
        of processes.
        """
        sharded = self.strategy == "fsdp"
        optimizer = (sharded_optimizer_state if sharded else full_optimizer_state)(self.raw_model, self.optimizer)
        return {
            "trainer": type(self).__name__,
            "progress": asdict(self.progress),
            "world_size": self.context.world_size,
            "strategy": self.strategy,
            "mixed_precision": precision_name(self.precision),  # so a resumed run continues in the same precision
            "kernels": choices_made(),  # and with the same kernels: another kernel rounds differently
            "data_position": self.batches.items_consumed(self.progress.batch_in_epoch),
            "sharded": sharded,
            "optimizer": optimizer,
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
        }

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        """Restore what `trainer_state` saved (RNG states are restored when training continues)."""
        if state.get("sharded"):
            load_sharded_optimizer_state(self.raw_model, self.optimizer, state["optimizer"])
        else:
            load_full_optimizer_state(self.raw_model, self.optimizer, state["optimizer"])
        if self.lr_scheduler is not None and state.get("lr_scheduler") is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.progress = TrainingProgress(**state["progress"])
        use_recorded(state.get("kernels") or {})  # a checkpoint from before the record: the host's own choices
        self._rng_to_restore = state.get("rng")  # where checkpoints of earlier releases kept rank 0's
        # a checkpoint written before they were recorded has none: its first line averages the new steps only
        self.losses_before_resume = _loss_list(state.get("unlogged_losses", []))

    def save_checkpoint(self, val_loss: float | None = None) -> Path | None:
        """Write a checkpoint of the current step, every process its part, and tell the observers.

        Under FSDP2 nothing is gathered: each process writes its shards of the weights and the optimizer state
        (`cleangpt_core.checkpoints.sharded`), and rank 0 the rest. Otherwise rank 0 writes the model directory
        and the whole trainer state. Every process writes its own random generators.
        """
        if self.checkpoints is None:
            return None
        rank, main = self.context.rank, self.context.is_main
        rng = capture_rng_state()
        if self.strategy == "fsdp":
            weights = {MODEL_PREFIX + name: tensor for name, tensor in sharded_model_state(self.raw_model).items()}
            structure, tensors = flatten_state(self.trainer_state(), STATE_PREFIX, copy=False)

            def write(directory: Path) -> None:
                write_rng_state(directory, rank, rng)
                write_shards({**weights, **tensors}, directory)
                if main:
                    write_model_config(self.raw_model, directory)
                    write_state_structure(directory, structure)
                    self._write_extras(directory)

        else:
            full_weights, state = full_model_state(self.raw_model), self.trainer_state()  # collective under DDP

            def write(directory: Path) -> None:
                write_rng_state(directory, rank, rng)
                if main:
                    write_model(GatheredModel(self.raw_model, full_weights), directory)
                    write_state(directory, state)
                    self._write_extras(directory)

        path = self.checkpoints.save_together(
            self.progress.step, write, context=self.context, device=self.device, val_loss=val_loss
        )
        self.events.emit("checkpoint_saved", trainer=self, step=self.progress.step, path=path)
        return path

    def _write_extras(self, directory: Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
        if self.experiment is not None:
            write_text_atomic(directory / EXPERIMENT_FILE, self.experiment.model_dump_json(indent=2) + "\n")

    def load_checkpoint(self, path: str | Path) -> Path:
        """Restore weights, optimizer, schedules, RNG states and the data position from a checkpoint.

        `path` is a checkpoint directory or a run directory (its ``latest`` checkpoint is used). A sharded
        checkpoint is read by every process, each reading only the slices of the shards it holds now (on any
        number of processes); an unsharded one is read whole.
        """
        checkpoint = find_training_checkpoint(path)
        if has_shards(checkpoint):
            state = self._read_sharded(checkpoint)
        else:
            state = read_state(checkpoint)
            load_checkpoint_weights(self.raw_model, checkpoint)
        self.load_trainer_state(state)
        self._continue_rng(checkpoint)
        self._continue_data_order(checkpoint, state)
        if self.strategy == "fsdp" and self._fsdp_policy().param_dtype != self._gather_dtype and self.context.is_main:
            logger.warning(
                "the resumed run computes in %s, but FSDP2 gathers its weights in %s, as chosen when the model was "
                "sharded; set trainer.fsdp_param_dtype to gather them as the run did before",
                precision_name(self.precision),
                self._gather_dtype or "fp32",
            )
        return checkpoint

    def _read_sharded(self, checkpoint: Path) -> dict[str, Any]:
        """Fill the model and a state to load from a sharded checkpoint, each process reading its own slices.

        The model's weights and the optimizer's state (made first if the optimizer has not stepped) are filled
        in place, as this process holds them; any other tensor of the trainer state is read whole.
        """
        structure = read_state_structure(checkpoint)
        weights = sharded_model_state(self.raw_model)
        optimizer = sharded_optimizer_state(self.raw_model, self.optimizer)
        _, targets = flatten_state(optimizer, f"{STATE_PREFIX}.optimizer", copy=False)
        saved = set(tensor_paths(structure))
        written = {path for path in saved if path.startswith(f"{STATE_PREFIX}.optimizer.")}
        if written != set(targets):
            raise CheckpointError(
                f"the optimizer state in {checkpoint} does not fit this optimizer ({len(written)} tensors saved, "
                f"{len(targets)} here); resume with the optimizer the run was started with"
            )
        shapes = shard_shapes(checkpoint)
        targets |= {path: torch.empty(shapes[path][0], dtype=shapes[path][1]) for path in saved - set(targets)}
        read_shards(
            {**{MODEL_PREFIX + name: tensor for name, tensor in weights.items()}, **targets},
            checkpoint,
            alone=not self.context.enabled,
        )
        load_sharded_model_state(self.raw_model, weights)
        return unflatten_state(structure, targets)

    def _continue_rng(self, checkpoint: Path) -> None:
        """Choose the random generators this process continues with: its own as checkpointed; on a process the
        writing run did not have, rank 0's, with torch's reseeded from (seed, rank, step)."""
        own = read_rng_state(checkpoint, self.context.rank)
        if own is not None:
            self._rng_to_restore = own
            return
        first = read_rng_state(checkpoint, 0)
        if first is not None:
            self._rng_to_restore = first
        if self.context.rank > 0:
            self._torch_seed_to_restore = rank_seed(self.options.seed, self.context.rank, self.progress.step)

    def _continue_data_order(self, checkpoint: Path, state: dict[str, Any]) -> None:
        """Place the data position of a checkpoint written by another strategy or number of processes,
        and say so (see `cleangpt_core.trainers.batches` for the rule)."""
        world, strategy = state["world_size"], state.get("strategy", "ddp" if state["world_size"] > 1 else "none")
        done = self.progress.batch_in_epoch
        items = state.get("data_position", self.batches.items_consumed(done, world_size=world))
        self.progress.batch_in_epoch = self.batches.batches_after(items)
        skipped = self.batches.items_consumed(self.progress.batch_in_epoch) - items
        changed = (world, strategy) != (self.context.world_size, self.strategy) or skipped
        if changed and self.context.is_main:
            logger.warning(
                "resuming %s, written with strategy %s on %d process(es), with strategy %s on %d: weights and "
                "optimizer state are read as this strategy holds them; epoch %d continues at item %d of its order%s",
                checkpoint,
                strategy,
                world,
                self.strategy,
                self.context.world_size,
                self.progress.epoch,
                items + skipped,
                f" ({skipped} item(s) skipped: the global batch changed)" if skipped else "",
            )

    def restore_pending_rng(self) -> None:
        """Put back the RNG states of a loaded checkpoint, right before the first step after it."""
        if self._rng_to_restore is not None:
            restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
        if self._torch_seed_to_restore is not None:
            torch.manual_seed(self._torch_seed_to_restore)
            self._torch_seed_to_restore = None


def rank_seed(seed: int, rank: int, *more: int) -> int:
    """A seed for process `rank` of a run seeded with `seed` (and `more`, such as the step): distinct streams
    for distinct ranks, the same on every run (numpy's SeedSequence mixes the numbers)."""
    return int(np.random.SeedSequence([seed, rank, *more]).generate_state(1, np.uint64)[0])


def _loss_list(value: Any) -> list[float]:
    if not isinstance(value, list) or not all(isinstance(loss, int | float) for loss in value):
        raise CheckpointError(f"the trainer state's unlogged_losses must be a list of numbers, not {value!r:.80}")
    return [float(loss) for loss in value]
