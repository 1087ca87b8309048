"""The trainer contract as reusable checks, for the built-in trainers and for a plugin's own.

    from cleangpt_core.testing.trainer import check_trainer_contract

    def test_my_trainer_keeps_the_contract(tmp_path):
        check_trainer_contract("my_trainer", tmp_path)

The checks train a two-layer model on a tiny, learnable language (a noisy counting sequence) for a few dozen
steps on the CPU, and raise `AssertionError` stating the contract and what the trainer did:

- the loss falls on a problem a model can learn;
- ``evaluate()`` reports ``perplexity == exp(loss)``, with the loss averaged over every predicted token;
- a run stopped after a checkpoint and resumed by a fresh trainer (a fresh, differently initialised model
  too) ends with weights bitwise identical to a run that never stopped.

`run_tiny_training` is also the body of the SIGKILL test, which runs it in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cleangpt_core.model.factory import get_model
from cleangpt_core.testing.device_checks import DeviceChecks
from cleangpt_core.trainers.base_trainer import BaseTrainer
from cleangpt_core.trainers.factory import get_trainer
from cleangpt_core.trainers.optim_factory import get_optimizer, get_schedule

TINY_MODEL = {"vocab_size": 17, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "dropout": 0.1}


class CountingLanguage(Dataset):
    """Windows of a sequence that counts modulo the vocabulary, with one token in ten random: learnable, not
    trivial, and identical for every seed-matched run."""

    def __init__(self, windows: int, block_size: int, vocab_size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        length = windows * block_size + 1
        stream = torch.arange(length) % vocab_size
        noisy = torch.rand(length, generator=generator) < 0.1
        stream[noisy] = torch.randint(0, vocab_size, (int(noisy.sum()),), generator=generator)
        self.windows = stream[: windows * block_size].view(windows, block_size)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        window = self.windows[index]
        return {"input_ids": window, "labels": window}


def tiny_model(seed: int = 0, architecture: str = "Vanilla", **overrides: Any) -> nn.Module:
    """A small model (Vanilla by default; with dropout, so resuming must restore the RNG), initialised from `seed`."""
    torch.manual_seed(seed)
    return get_model(architecture, **{**TINY_MODEL, **overrides})


def tiny_loaders(batch_size: int = 8, windows: int = 96) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches and held-out evaluation batches of the counting language."""
    block, vocab = TINY_MODEL["block_size"], TINY_MODEL["vocab_size"]
    train = DataLoader(CountingLanguage(windows, block, vocab, seed=0), batch_size=batch_size, shuffle=True)
    val = DataLoader(CountingLanguage(24, block, vocab, seed=1), batch_size=batch_size)
    return train, val


def build_tiny_trainer(
    trainer_type: str,
    model_seed: int = 0,
    *,
    batch_size: int = 8,
    model_options: dict[str, Any] | None = None,
    optimizer: str | None = None,
    schedule: str | None = None,
    architecture: str = "Vanilla",
    device: str | torch.device = "cpu",
    **options: Any,
) -> BaseTrainer:
    """A trainer of `trainer_type` on the counting language, on the CPU, with AdamW at lr 3e-3.

    `optimizer` and `schedule` name registered components to use instead, with their default options;
    `architecture` another registered architecture with the tiny shape; `device` a CPU device (see
    `cleangpt_core.testing.device_checks`).
    """
    model = tiny_model(model_seed, architecture, **(model_options or {}))
    train, val = tiny_loaders(batch_size)
    if optimizer is None:
        built = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    else:
        built = get_optimizer(optimizer, model)
    if schedule is not None:
        options["lr_scheduler"] = get_schedule(schedule)
    options.setdefault("progress_bar", False)
    return get_trainer(trainer_type, model, train, built, device=device, eval_dataloader=val, **options)


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def check_loss_decreases(trainer_type: str, **options: Any) -> None:
    """Training must lower the validation loss well below the untrained model's."""
    trainer = build_tiny_trainer(trainer_type, num_epochs=4, **options)
    before = trainer.evaluate()["loss"]
    stats = trainer.train()
    after = trainer.evaluate()["loss"]
    if not after < before - 0.5:
        raise AssertionError(
            f"trainer {trainer_type!r}: training must lower the loss on a learnable problem, but the validation "
            f"loss went from {before:.4f} to {after:.4f} in {stats.get('steps')} steps"
        )


def check_perplexity_is_exp_loss(trainer_type: str, **options: Any) -> None:
    """evaluate() must return loss and perplexity == exp(loss), the loss being the mean over all tokens (of the
    model in the trainer's precision: evaluation runs under the same autocast as training)."""
    trainer = build_tiny_trainer(trainer_type, **options)
    metrics = trainer.evaluate()
    missing = {"loss", "perplexity"} - set(metrics)
    if missing:
        raise AssertionError(f"trainer {trainer_type!r}: evaluate() must return loss and perplexity; missing {missing}")
    if not math.isclose(metrics["perplexity"], math.exp(metrics["loss"]), rel_tol=1e-9):
        raise AssertionError(
            f"trainer {trainer_type!r}: evaluate() must report perplexity == exp(loss), got perplexity "
            f"{metrics['perplexity']} for loss {metrics['loss']} (exp(loss) = {math.exp(metrics['loss'])})"
        )
    model = trainer.raw_model.eval()
    token_losses, tokens = 0.0, 0
    with torch.no_grad(), trainer.autocast():
        for batch in trainer.eval_dataloader:
            logits = model(batch["input_ids"])["logits"]
            token_losses += torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)).double(),
                batch["labels"][:, 1:].reshape(-1),
                reduction="sum",
            ).item()
            tokens += batch["labels"][:, 1:].numel()
    if not math.isclose(metrics["loss"], token_losses / tokens, rel_tol=1e-5):
        raise AssertionError(
            f"trainer {trainer_type!r}: evaluate()'s loss must be the sum of token losses over the token count "
            f"({token_losses / tokens:.6f} here), got {metrics['loss']:.6f}"
        )


class StopAtStep:
    """A callback asking the trainer to stop after optimizer step `step` (as an interruption would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: BaseTrainer, step: int) -> None:
        if step == self.step:
            trainer.request_stop(f"stopped by the test at step {step}")


def check_resume_is_exact(trainer_type: str, workdir: str | Path, **options: Any) -> None:
    """A run stopped after a checkpoint and resumed must end with the weights of a run that never stopped."""
    workdir = Path(workdir)
    options = {"num_epochs": 3, "checkpoint_interval": 5, **options}
    straight = build_tiny_trainer(trainer_type, output_dir=workdir / "straight", **options)
    straight.train()
    interrupted = build_tiny_trainer(
        trainer_type, output_dir=workdir / "resumed", callbacks=[StopAtStep(15)], **options
    )
    interrupted.train()
    if interrupted.progress.step != 15:
        raise AssertionError(
            f"trainer {trainer_type!r}: request_stop() at step 15 must stop the run there; it ran to step "
            f"{interrupted.progress.step}"
        )
    resumed = build_tiny_trainer(trainer_type, model_seed=1, output_dir=workdir / "resumed", **options)
    resumed.train(resume_from=workdir / "resumed")
    _assert_same_weights(weights_of(straight.raw_model), weights_of(resumed.raw_model), trainer_type)


def _assert_same_weights(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor], who: str) -> None:
    differing = [name for name in expected if not torch.equal(expected[name], actual[name])]
    if differing:
        worst = max((expected[n] - actual[n]).abs().max().item() for n in differing)
        raise AssertionError(
            f"trainer {who!r}: a resumed run must end bitwise identical to one that never stopped, but "
            f"{len(differing)} of {len(expected)} tensors differ (largest difference {worst:.3g}), e.g. {differing[0]}"
        )


def check_trainer_contract(trainer_type: str, workdir: str | Path, **options: Any) -> None:
    """Every check above, for the trainer registered as `trainer_type` (with `options`)."""
    check_loss_decreases(trainer_type, **options)
    check_perplexity_is_exp_loss(trainer_type, **options)
    check_resume_is_exact(trainer_type, workdir, **options)


class SlowSteps:
    """A callback that sleeps after every step, so a test can kill a tiny run in its middle."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self) -> None:
        time.sleep(self.seconds)


def run_tiny_training(
    trainer_type: str,
    run_dir: Path | None,
    *,
    resume: bool = False,
    step_delay: float = 0.0,
    callbacks: list[object] | None = None,
    **options: Any,
) -> BaseTrainer:
    """Train the tiny problem into `run_dir` (continuing its latest checkpoint if `resume`)."""
    callbacks = [*(callbacks or []), *([SlowSteps(step_delay)] if step_delay else [])]
    trainer = build_tiny_trainer(
        trainer_type, model_seed=1 if resume else 0, output_dir=run_dir, callbacks=callbacks, **options
    )
    trainer.train(resume_from=run_dir if resume else None)
    return trainer


def main() -> None:
    """``python -m cleangpt_core.testing.trainer [RUN_DIR]``: a tiny run in its own process (or torchrun's)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--trainer", default="advanced")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=TINY_MODEL["dropout"])
    parser.add_argument("--checkpoint-interval", type=int, default=5)
    parser.add_argument("--losses-out", type=Path, help="write the per-step losses here as JSON (main process)")
    parser.add_argument("--strategy", default="auto", help="trainer.strategy under torchrun: auto, ddp or fsdp")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--optimizer", help="a registered optimizer, default options (default: torch's AdamW)")
    parser.add_argument("--schedule", help="a registered learning-rate schedule, default options (default: none)")
    parser.add_argument("--mixed-precision", help="the advanced trainer's mixed_precision (default: its default)")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (each torchrun rank takes its LOCAL_RANK's GPU)")
    parser.add_argument("--grad-clip", type=float, help="the advanced trainer's grad_clip")
    parser.add_argument(
        "--device-checks",
        type=Path,
        help="train under DeviceChecks (cleangpt_core.testing.device_checks) and write each rank's report to "
        "PATH-<rank>.json",
    )
    arguments = parser.parse_args()
    extra = {} if arguments.mixed_precision is None else {"mixed_precision": arguments.mixed_precision}
    if arguments.grad_clip is not None:
        extra["grad_clip"] = arguments.grad_clip
    checks = DeviceChecks() if arguments.device_checks else None
    with checks or nullcontext():
        trainer = _main_run(arguments, extra, checks)
    if checks is not None:
        path = Path(f"{arguments.device_checks}-{trainer.context.rank}.json")
        path.write_text(json.dumps(checks.report()))
    if arguments.losses_out is not None and trainer.context.is_main:
        arguments.losses_out.write_text(json.dumps(trainer.losses))


def _main_run(arguments: argparse.Namespace, extra: dict[str, Any], checks: DeviceChecks | None) -> BaseTrainer:
    return run_tiny_training(
        arguments.trainer,
        arguments.run_dir,
        resume=arguments.resume,
        step_delay=arguments.step_delay,
        batch_size=arguments.batch_size,
        model_options={"dropout": arguments.dropout},
        num_epochs=arguments.epochs,
        max_steps=arguments.max_steps,
        checkpoint_interval=arguments.checkpoint_interval if arguments.run_dir else None,
        strategy=arguments.strategy,
        activation_checkpointing=arguments.activation_checkpointing,
        optimizer=arguments.optimizer,
        schedule=arguments.schedule,
        log_interval=arguments.log_interval,
        device=checks.device if checks is not None else arguments.device,
        callbacks=[checks] if checks is not None else None,
        **extra,
    )


if __name__ == "__main__":
    main()
