"""`SimpleTrainer`: the plain loop (one batch, one optimizer step), with checkpoints, events and a tqdm bar.

The loop is written once here; `AdvancedTrainer` changes what happens inside a step (accumulation, mixed
precision, clipping, schedules) and after an evaluation (early stopping), not the loop itself.

A stop signal (Ctrl-C, SIGTERM, SLURM's SIGUSR1: `cleangpt_core.trainers.interrupts`) ends the loop after the
step it arrived in: a checkpoint of that step is written and `StopRequested` raised, naming it, so resuming
loses nothing. Arriving during the last step or the final evaluation, it lets the run finish first.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from cleangpt_core.checkpoints.run_dir import step_of
from cleangpt_core.distributed.devices import synchronize
from cleangpt_core.distributed.process_group import all_reduce_sum
from cleangpt_core.distributed.strategies import gradient_sync
from cleangpt_core.errors import TrainingDivergedError
from cleangpt_core.trainers.base_trainer import BaseTrainer
from cleangpt_core.trainers.batches import Batch
from cleangpt_core.trainers.evaluation import count_targets
from cleangpt_core.trainers.interrupts import STOP_SIGNALS, StopRequest, StopRequested, deferred_stop
from cleangpt_core.trainers.precision import precision_name
from cleangpt_core.trainers.schemas import SimpleTrainerConfig, TrainerConfig
from cleangpt_core.trainers.step_values import PendingLosses, StepMetrics, is_logging_step
from cleangpt_core.trainers.throughput import Throughput


class SimpleTrainer(BaseTrainer):
    """Train for `num_epochs` (or `max_steps`), evaluating and checkpointing as the options say."""

    options_schema: ClassVar[type[TrainerConfig]] = SimpleTrainerConfig
    _grad_norm: torch.Tensor | None = None  # the last step's gradient norm, on the device (see `grad_norm`)

    def train(self, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Train, and return statistics: steps, tokens, losses, throughput and the final validation loss.

        `resume_from` (a checkpoint or run directory) continues an interrupted run exactly where it stopped.
        The main process holds the run directory's lock throughout (already held when the experiment runner
        calls: the lock is taken once per process). A stop signal ends it with `StopRequested` (see the module).
        """
        with self.run_lock(), deferred_stop() as stop:
            self._stop = stop
            self._resumed_from = self.load_checkpoint(resume_from) if resume_from is not None else None
            self._events = None  # pick up plugins installed since the last run
            self.stop_reason = None
            self.losses: list[float] = []  # every step's loss, read back from the device on logging steps
            self._pending_losses = PendingLosses(self.context)
            self._losses_checked = 0
            self._complete_evaluation: tuple[int, dict[str, Any]] | None = None
            self._finished = False
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            self.events.emit("train_begin", trainer=self)
            self.restore_pending_rng()
            show_bar = self.options.progress_bar if self.options.progress_bar is not None else sys.stderr.isatty()
            self._bar = tqdm(
                total=self.total_steps(),
                initial=self.progress.step,
                desc="train",
                unit="step",
                disable=not (show_bar and self.context.is_main),
                dynamic_ncols=True,
            )
            started, tokens_before = time.perf_counter(), self.progress.tokens
            self._throughput = Throughput(self.device)
            try:
                self._run_epochs()
            except StopRequested as stop:  # a second signal stops mid-step: the last checkpoint is where it stands
                if stop.checkpoint is None and self.checkpoints is not None:
                    stop.checkpoint = self.checkpoints.latest()
                    stop.step = step_of(stop.checkpoint) if stop.checkpoint is not None else None
                raise
            finally:
                self._bar.close()
            synchronize(self.device)  # the last steps are done, not only queued
            elapsed = time.perf_counter() - started
            stats = self._finish(elapsed, self.progress.tokens - tokens_before)
            self.events.emit("train_end", trainer=self, stats=stats)
            signum = self._agreed_stop_signal()
            if signum is not None:  # it arrived in the last step or the final evaluation: the run is complete
                checkpoint = stats["checkpoint"]
                raise StopRequested(signum, self.progress.step, Path(checkpoint) if checkpoint else None)
            return stats

    def _budget_left(self) -> bool:
        max_steps = self.options.max_steps
        return self.stop_reason is None and (max_steps is None or self.progress.step < max_steps)

    def _run_epochs(self) -> None:
        while self.progress.epoch < self.num_epochs and self._budget_left():
            epoch = self.progress.epoch
            self.events.emit("epoch_begin", trainer=self, epoch=epoch)
            group: list[Batch] = []
            for batch in self.batches.epoch(epoch, start=self.progress.batch_in_epoch):
                group.append(batch)
                if len(group) == self.options.gradient_accumulation_steps:
                    self._step(group)
                    group = []
                    if not self._budget_left():
                        return
            if group:  # the epoch's last, shorter accumulation group still makes a step
                self._step(group)
            self.progress.epoch += 1
            self.progress.batch_in_epoch = 0
            self.events.emit("epoch_end", trainer=self, epoch=epoch)

    def _step(self, group: list[Batch]) -> None:
        """One optimizer step over `group`, whose gradients sum to those of one batch made of all of it.

        Nothing here waits for the device (see `cleangpt_core.trainers.step_values`): the loss stays on it, and
        the pending losses are read back only on the steps that log, evaluate or checkpoint; tokens/s and the
        step time are measured on logging steps (`cleangpt_core.trainers.throughput`).
        """
        step = self.progress.step + 1
        self.events.emit("step_begin", trainer=self, step=step)
        counts = [count_targets(batch) for batch in group]  # on the host, from the host's batches
        # every token weighs the same across micro-batches and ranks (DDP and FSDP average gradients over ranks);
        # under torchrun the total is summed on the device, where NCCL takes its tensors
        total: float | torch.Tensor = float(sum(counts)) or 1.0
        if self.context.enabled:
            summed = all_reduce_sum(torch.full((), float(sum(counts)), device=self.device), self.context)
            total = summed.clamp_min(1.0)
        loss_sum = torch.zeros((), device=self.device)
        for index, (batch, count) in enumerate(zip(group, counts, strict=True)):
            batch = self.to_device(batch)
            last = index == len(group) - 1
            with gradient_sync(self.model, enabled=last):
                with self.autocast():
                    loss = self.model(**batch)["loss"]
                self.backward(loss * (count * self.context.world_size / total))
            loss_sum += loss.detach().float() * count
        self._pending_losses.add(loss_sum, sum(counts))
        lr = self.optimizer.param_groups[0]["lr"]
        reads = self._reads_back(step)
        if reads:  # never update the weights with a non-finite loss that is about to be read anyway
            self._read_losses(step)
        self.optimizer_step()
        tokens = sum(batch["input_ids"].numel() for batch in group) * self.context.world_size
        self.progress.step = step
        self.progress.batch_in_epoch += len(group)
        self.progress.tokens += tokens
        self._throughput.add(tokens)
        index = len(self.losses) + len(self._pending_losses) - 1
        pending = {"loss": lambda: self._loss_of(index)}
        if self._grad_norm is not None:
            pending["grad_norm"] = lambda norm=self._grad_norm: float(norm)
        timing = self._throughput.measure() if is_logging_step(self, step) else {}
        for key in ("tokens_per_s", "step_time_s"):  # on a quiet step, measured only if someone asks
            if key not in timing:
                pending[key] = lambda key=key: self._throughput.measure()[key]
        metrics = StepMetrics(
            {"lr": lr, **timing, "tokens": self.progress.tokens, "epoch": self.progress.epoch}, pending
        )
        if reads:
            self._bar.set_postfix(
                loss=f"{metrics['loss']:.4f}", tok_s=f"{metrics['tokens_per_s']:,.0f}", refresh=False
            )
        self.events.emit("step_end", trainer=self, step=step, metrics=metrics)
        self._bar.update(1)
        self._periodic_work(step)
        if reads:  # the next span times training steps only, not this step's evaluation or checkpoint
            self._throughput.restart()
        if step != self.total_steps() and (reads or not self.context.enabled):
            self._stop_if_signalled()

    @property
    def grad_norm(self) -> float | None:
        """The last step's gradient norm, where `optimizer_step` measures it (reading it waits for the device)."""
        return None if self._grad_norm is None else float(self._grad_norm)

    def _reads_back(self, step: int) -> bool:
        """Whether `step` reads the pending losses: it logs, evaluates or checkpoints."""
        options = self.options
        evaluates = bool(options.eval_interval) and step % options.eval_interval == 0 and self.eval_dataloader
        checkpoints = bool(options.checkpoint_interval) and step % options.checkpoint_interval == 0
        return is_logging_step(self, step) or bool(evaluates) or checkpoints

    def _read_losses(self, step: int) -> None:
        """Read the pending losses back (one wait for the device) and stop if one of them is not finite."""
        self.losses.extend(self._pending_losses.read())
        for index in range(self._losses_checked, len(self.losses)):
            if not math.isfinite(self.losses[index]):
                self._diverged(step - (len(self.losses) - 1 - index), self.losses[index], step)
        self._losses_checked = len(self.losses)

    def _loss_of(self, index: int) -> float:
        """The loss of the step at `index` of this run's steps, read back from the device if still pending
        (a receiver asked for it; the loop checks it is finite on its next reading step)."""
        if index >= len(self.losses):
            self.losses.extend(self._pending_losses.read())
        return self.losses[index]

    def trainer_state(self) -> dict[str, Any]:
        """The base state, the losses of the steps since the last metrics line (`losses_before_resume` of the
        run that resumes it), and whether the run had finished (its final checkpoint, which `cleangpt runs`
        tells from one a stopped run left)."""
        return {
            **super().trainer_state(),
            "unlogged_losses": self._unlogged_losses(),
            "finished": getattr(self, "_finished", False),
        }

    def _unlogged_losses(self) -> list[float]:
        step = self.progress.step
        since = 0 if is_logging_step(self, step) else step % self.options.log_interval
        if since == 0:
            return []
        pending = getattr(self, "_pending_losses", None)  # None before `train`
        if pending is not None and len(pending):  # a checkpoint step has read them already; any other reads now
            self.losses.extend(pending.read())
        return (self.losses_before_resume + getattr(self, "losses", []))[-since:]

    def _periodic_work(self, step: int) -> None:
        options = self.options
        if step == self.total_steps():  # the last step: `_finish` evaluates on all the data and checkpoints
            return
        val_loss = None
        if options.eval_interval and step % options.eval_interval == 0 and self.eval_dataloader is not None:
            evaluation = self.evaluate(max_batches=options.eval_max_batches)
            val_loss = evaluation["loss"]
            self.after_evaluation(val_loss)
            if options.eval_max_batches is None:  # on all the data: if the run stops here, it is the final one
                self._complete_evaluation = (step, evaluation)
        if options.checkpoint_interval and step % options.checkpoint_interval == 0:
            self.save_checkpoint(val_loss)

    def _agreed_stop_signal(self) -> int | None:
        """The stop signal this process received (under torchrun: any process; one collective), or None."""
        stop: StopRequest = getattr(self, "_stop", StopRequest())
        if not self.context.enabled:
            return stop.signum
        received = torch.tensor([float(stop.signum == signum) for signum in STOP_SIGNALS], device=self.device)
        counts = all_reduce_sum(received, self.context).tolist()
        return next((int(signum) for signum, count in zip(STOP_SIGNALS, counts, strict=True) if count), None)

    def _stop_if_signalled(self) -> None:
        """After a step: on a stop signal, write this step's checkpoint (unless the step just wrote it) and stop.

        Under torchrun the processes agree first, on the steps that read the losses back anyway (every
        log_interval at most), so that every one stops at the same step and joins the checkpoint's collectives.
        """
        signum = self._agreed_stop_signal()
        if signum is None:
            return
        latest = self.checkpoints.latest() if self.checkpoints is not None else None
        checkpoint = latest if latest is not None and step_of(latest) == self.progress.step else self.save_checkpoint()
        raise StopRequested(signum, self.progress.step, checkpoint)

    def _diverged(self, step: int, loss: float, stopped_at: int) -> None:
        latest = self.checkpoints.latest() if self.checkpoints is not None else None
        kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written before it"
        raise TrainingDivergedError(
            f"the training loss became {loss} at step {step} (epoch {self.progress.epoch}); training stopped at "
            f"step {stopped_at}, the first to read it back from the device, before its weight update and before "
            f"writing another checkpoint, and {kept}. Lower the learning rate, clip gradients or check the data."
        )

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of `loss`."""
        loss.backward()

    def optimizer_step(self) -> None:
        """Apply the accumulated gradients, clear them and advance the schedule."""
        self.update_weights()
        self.optimizer.zero_grad(set_to_none=True)
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()

    def update_weights(self) -> None:
        """Change the weights by the accumulated gradients (subclasses clip or scale them first)."""
        self.optimizer.step()

    def after_evaluation(self, val_loss: float) -> None:
        """Track the best validation loss (subclasses may stop early on it)."""
        best = self.progress.best_val_loss
        if best is None or val_loss < best:
            self.progress.best_val_loss = val_loss

    def _finish(self, elapsed: float, tokens: int) -> dict[str, Any]:
        """Evaluate and checkpoint the final weights, and gather the statistics `train` returns."""
        self._read_losses(self.progress.step)  # a run stopped between two logging steps
        stats: dict[str, Any] = {
            "steps": self.progress.step,
            "epochs_completed": self.progress.epoch,
            "tokens": self.progress.tokens,
            "train_loss": self.losses[-1] if self.losses else None,  # the last step's (None: no step was taken)
            "losses": list(self.losses),
            "elapsed_s": elapsed,
            "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
            "mixed_precision": precision_name(self.precision),
            "stop_reason": self.stop_reason,
        }
        if not self.losses and self._resumed_from is not None:
            # A finished run resumed: its final evaluation and checkpoint exist; report them, record nothing new.
            if self.eval_dataloader is not None:
                evaluation = self.measure()
                stats.update(
                    val_loss=evaluation["loss"],
                    val_perplexity=evaluation["perplexity"],
                    val_tokens=evaluation["tokens"],
                    val_stderr=evaluation.get("stderr"),
                )
            stats.update(best_val_loss=self.progress.best_val_loss, checkpoint=str(self._resumed_from))
            return stats
        val_loss = None
        if self.eval_dataloader is not None:
            done = self._complete_evaluation
            if done is not None and done[0] == self.progress.step:  # stopped early right after evaluating it all
                evaluation = done[1]
            else:
                evaluation = self.evaluate()
                self.after_evaluation(evaluation["loss"])
            val_loss = evaluation["loss"]
            stats.update(
                val_loss=val_loss,
                val_perplexity=evaluation["perplexity"],
                val_tokens=evaluation["tokens"],
                val_stderr=evaluation.get("stderr"),
            )
        stats["best_val_loss"] = self.progress.best_val_loss
        self._finished = True
        checkpoint = self.save_checkpoint(val_loss)
        stats["checkpoint"] = str(checkpoint) if checkpoint is not None else None
        return stats
