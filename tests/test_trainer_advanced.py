"""The advanced trainer: accumulation, mixed precision, schedules, clipping, early stopping, averaging."""

from __future__ import annotations

import math

import pytest
import safetensors.torch
import torch
from torch.utils.data import DataLoader

from cleangpt_core.errors import ConfigError
from cleangpt_core.testing.trainer import CountingLanguage, build_tiny_trainer, tiny_loaders, tiny_model
from cleangpt_core.trainers import AdvancedTrainer, get_trainer
from cleangpt_core.trainers.optim_factory import get_schedule
from cleangpt_core.trainers.schedules import WarmupCosine


class RecordSteps:
    def __init__(self):
        self.lrs, self.losses = [], []

    def on_step_end(self, metrics):
        self.lrs.append(metrics["lr"])
        self.losses.append(metrics["loss"])


def _padded_language(batch_size: int) -> DataLoader:
    """Windows whose number of scored tokens differs row by row, so micro-batches weigh differently."""
    data = CountingLanguage(32, 16, 17, seed=4)
    items = []
    for index in range(len(data)):
        labels = data[index]["labels"].clone()
        labels[16 - (index * 5) % 13 :] = -100
        items.append({"input_ids": data[index]["input_ids"], "labels": labels})
    return DataLoader(items, batch_size=batch_size, shuffle=True)


def _train_weights(batch_size: int, accumulation: int) -> dict[str, torch.Tensor]:
    model = tiny_model(dropout=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    trainer = get_trainer(
        "advanced",
        model,
        _padded_language(batch_size),
        optimizer,
        "cpu",
        max_steps=4,
        gradient_accumulation_steps=accumulation,
        mixed_precision="no",  # equal to float rounding: bf16 would round micro-batches and the big batch apart
        progress_bar=False,
    )
    trainer.train()
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_gradient_accumulation_equals_one_big_batch():
    big = _train_weights(batch_size=8, accumulation=1)
    accumulated = _train_weights(batch_size=2, accumulation=4)
    moved = max((big[name] - tiny_model(dropout=0.0).state_dict()[name]).abs().max() for name in big)
    assert moved > 1e-3  # the runs really trained
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-5, atol=1e-6)


def test_fp16_on_cpu_is_refused_with_what_to_use_instead():
    with pytest.raises(ConfigError, match="fp16.*CUDA.*bf16"):
        build_tiny_trainer("advanced", mixed_precision="fp16")


def test_bf16_mixed_precision_trains_on_cpu():
    trainer = build_tiny_trainer("advanced", mixed_precision=True, num_epochs=2)
    assert trainer.precision == torch.bfloat16 and trainer.scaler is None
    with trainer.autocast():
        logits = trainer.model(torch.zeros(1, 4, dtype=torch.long))["logits"]
    assert logits.dtype == torch.bfloat16
    stats = trainer.train()
    assert stats["val_loss"] < math.log(17) - 0.3


def test_warmup_then_cosine_decay_to_the_floor():
    schedule = WarmupCosine(warmup_steps=4, decay_steps=14, min_ratio=0.1)
    assert schedule(0) == pytest.approx(1 / 5)
    assert schedule(3) == pytest.approx(4 / 5)
    assert schedule(4) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(14) == schedule(100) == pytest.approx(0.1)
    values = [schedule(step) for step in range(4, 15)]
    assert values == sorted(values, reverse=True)


def test_the_cosine_schedule_drives_the_optimizer_step_by_step():
    record = RecordSteps()
    trainer = build_tiny_trainer(
        "advanced",
        max_steps=10,
        lr_scheduler=get_schedule("cosine", warmup_steps=2, min_lr_ratio=0.1),
        callbacks=[record],
    )
    trainer.train()
    expected = [3e-3 * WarmupCosine(2, 10, 0.1)(step) for step in range(10)]
    assert record.lrs == pytest.approx(expected)


def test_a_callers_scheduler_is_stepped_once_per_optimizer_step():
    model = tiny_model()
    train, _ = tiny_loaders()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    record = RecordSteps()
    trainer = get_trainer(
        "advanced",
        model,
        train,
        optimizer,
        "cpu",
        max_steps=6,
        lr_scheduler=scheduler,
        gradient_accumulation_steps=2,
        callbacks=[record],
        progress_bar=False,
    )
    trainer.train()
    assert record.lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])


def test_gradient_clipping_bounds_the_update():
    model = tiny_model(dropout=0.0)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    train, _ = tiny_loaders()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = get_trainer("advanced", model, train, optimizer, "cpu", max_steps=1, grad_clip=1e-3, progress_bar=False)
    trainer.train()
    update = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True)))
    assert 0 < update <= 1e-3 * (1 + 1e-4)


def test_early_stopping_ends_the_run_when_validation_stops_improving():
    trainer = build_tiny_trainer(
        "advanced",
        num_epochs=10,
        eval_interval=2,
        early_stopping_patience=2,
        early_stopping_min_delta=10.0,  # nothing counts as an improvement after the first evaluation
    )
    stats = trainer.train()
    assert stats["steps"] == 6  # evaluations at 2 (best), 4 and 6 (no improvement twice)
    assert "early stopping" in stats["stop_reason"]


def test_the_last_checkpoints_are_averaged_into_the_model(tmp_path):
    trainer = build_tiny_trainer(
        "advanced", output_dir=tmp_path, max_steps=9, checkpoint_interval=3, average_last_checkpoints=3
    )
    stats = trainer.train()
    chosen = [tmp_path / "checkpoints" / f"step-0000000{step}" for step in (3, 6, 9)]
    assert stats["averaged_checkpoints"] == [str(path) for path in chosen]
    weights = [safetensors.torch.load_file(str(path / "model.safetensors")) for path in chosen]
    name = "transformer.h.0.mlp.c_fc.weight"
    expected = (weights[0][name] + weights[1][name] + weights[2][name]) / 3
    torch.testing.assert_close(trainer.raw_model.state_dict()[name], expected, rtol=0, atol=1e-6)
    assert (tmp_path / "averaged" / "config.json").is_file()
    assert math.isfinite(stats["averaged_val_loss"])


def test_averaging_needs_checkpoints_to_average():
    with pytest.raises(ConfigError, match="checkpoint_interval"):
        build_tiny_trainer("advanced", average_last_checkpoints=2)


def test_the_tutorials_constructor_arguments_are_accepted():
    model = tiny_model()
    train, val = tiny_loaders()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=1000)
    trainer = AdvancedTrainer(
        model,
        train,
        optimizer,
        torch.device("cpu"),
        num_epochs=1,
        output_dir=None,
        lr_scheduler=scheduler,
        gradient_accumulation_steps=4,
        mixed_precision=True,
        progress_bar=False,
    )
    stats = trainer.train()
    assert stats["steps"] == 3  # 12 batches / 4
    assert trainer.precision == torch.bfloat16
    assert "perplexity" in trainer.evaluate(val)
