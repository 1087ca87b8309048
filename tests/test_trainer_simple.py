"""The simple trainer and what every trainer shares: options, the batch order, evaluation, budgets, faults."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from cleangpt_core.errors import ConfigError, UnknownComponentError
from cleangpt_core.model import load_model
from cleangpt_core.testing.trainer import CountingLanguage, build_tiny_trainer, tiny_loaders, tiny_model
from cleangpt_core.trainers import BaseTrainer, SimpleTrainer, TrainingDivergedError, get_trainer


def _optimizer(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-3)


def test_get_trainer_builds_a_registered_trainer_by_name():
    model = tiny_model()
    train, _ = tiny_loaders()
    trainer = get_trainer("SIMPLE", model, train, _optimizer(model), torch.device("cpu"), num_epochs=2)
    assert isinstance(trainer, SimpleTrainer) and isinstance(trainer, BaseTrainer)
    assert trainer.num_epochs == 2


def test_an_unknown_option_is_rejected_with_the_nearest_name_before_any_work():
    model = tiny_model()
    train, _ = tiny_loaders()
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        get_trainer("simple", model, train, _optimizer(model), "cpu", max_step=5)


def test_an_invalid_option_value_names_the_field():
    model = tiny_model()
    train, _ = tiny_loaders()
    with pytest.raises(ConfigError, match="num_epochs"):
        get_trainer("simple", model, train, _optimizer(model), "cpu", num_epochs=0)


def test_an_unknown_trainer_lists_the_registered_ones():
    model = tiny_model()
    train, _ = tiny_loaders()
    with pytest.raises(UnknownComponentError, match="advanced"):
        get_trainer("fancy", model, train, _optimizer(model), "cpu")


def test_the_device_is_chosen_automatically():
    model = tiny_model()
    train, _ = tiny_loaders()
    trainer = get_trainer("simple", model, train, _optimizer(model))
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert trainer.device.type == expected


def test_train_returns_statistics():
    stats = build_tiny_trainer("simple", num_epochs=1).train()
    assert stats["steps"] == 12 and stats["epochs_completed"] == 1
    assert stats["tokens"] == 96 * 16
    assert len(stats["losses"]) == 12 and stats["tokens_per_s"] > 0
    assert math.isclose(stats["val_perplexity"], math.exp(stats["val_loss"]))


def test_max_steps_stops_inside_an_epoch():
    trainer = build_tiny_trainer("simple", num_epochs=5, max_steps=7)
    stats = trainer.train()
    assert stats["steps"] == 7
    assert trainer.progress.epoch == 0 and trainer.progress.batch_in_epoch == 7


def test_the_batch_order_is_a_function_of_the_seed_and_epoch():
    orders = []
    for _ in range(2):
        trainer = build_tiny_trainer("simple", seed=5)
        orders.append([batch["input_ids"].tolist() for batch in trainer.batches.epoch(1)])
    other_epoch = [batch["input_ids"].tolist() for batch in trainer.batches.epoch(2)]
    assert orders[0] == orders[1]
    assert orders[0] != other_epoch
    resumed = [batch["input_ids"].tolist() for batch in trainer.batches.epoch(1, start=4)]
    assert resumed == orders[0][4:]


def _padded_batches(batch_size: int) -> DataLoader:
    data = CountingLanguage(10, 16, 17, seed=3)
    items = []
    for index in range(len(data)):
        item = dict(data[index])
        labels = item["labels"].clone()
        labels[16 - index :] = -100  # row i ends with i padded positions
        item["labels"] = labels
        items.append(item)
    return DataLoader(items, batch_size=batch_size)


def test_evaluate_averages_over_tokens_not_batches_and_skips_padding():
    trainer = build_tiny_trainer("simple")
    by_two = trainer.evaluate(_padded_batches(2))
    by_three = trainer.evaluate(_padded_batches(3))
    model = trainer.raw_model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in _padded_batches(1):
            logits = model(batch["input_ids"])["logits"][:, :-1]
            targets = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, 17).double(), targets.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total, count = total + loss.item(), count + int((targets != -100).sum())
    assert by_two["tokens"] == by_three["tokens"] == count == sum(15 - i for i in range(10))
    assert by_two["loss"] == pytest.approx(total / count, rel=1e-6)
    assert by_three["loss"] == pytest.approx(by_two["loss"], rel=1e-6)
    assert by_two["perplexity"] == pytest.approx(math.exp(by_two["loss"]), rel=1e-12)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    class PoisonAfterCheckpoint:
        def on_checkpoint_saved(self, trainer, step):
            if step == 4:
                with torch.no_grad():
                    next(trainer.raw_model.parameters()).fill_(float("nan"))

    trainer = build_tiny_trainer(
        "simple", output_dir=tmp_path, checkpoint_interval=4, callbacks=[PoisonAfterCheckpoint()]
    )
    with pytest.raises(
        TrainingDivergedError, match=r"loss became nan at step 5.*last good checkpoint is .*step-00000004"
    ):
        trainer.train()
    assert trainer.checkpoints.latest().name == "step-00000004"
    restored = load_model(tmp_path)
    assert all(torch.isfinite(parameter).all() for parameter in restored.parameters())


def test_the_progress_bar_shows_loss_and_throughput(capsys):
    build_tiny_trainer("simple", max_steps=3, progress_bar=True).train()
    err = capsys.readouterr().err
    assert "loss=" in err and "tok_s=" in err


def test_without_a_terminal_there_is_no_progress_bar(capsys):
    build_tiny_trainer("simple", max_steps=3).train()
    assert "tok_s" not in capsys.readouterr().err


def test_a_batch_without_labels_is_trained_on_its_inputs():
    model = tiny_model()
    windows = CountingLanguage(16, 16, 17)
    batches = [{"input_ids": windows.windows[i : i + 4]} for i in range(0, 16, 4)]
    trainer = get_trainer("simple", model, batches, _optimizer(model), "cpu", progress_bar=False)
    stats = trainer.train()
    assert stats["steps"] == 4 and all(math.isfinite(loss) for loss in stats["losses"])


def test_a_tutorial_style_subclass_only_writes_its_loop():
    class OneStepTrainer(BaseTrainer):
        def train(self):
            batch = self.to_device(next(iter(self.dataloader)))
            loss = self.model(**batch)["loss"]
            loss.backward()
            self.optimizer.step()
            return {"loss": loss.item()}

    model = tiny_model()
    train, val = tiny_loaders()
    trainer = OneStepTrainer(model, train, _optimizer(model), torch.device("cpu"), None)
    assert math.isfinite(trainer.train()["loss"])
    assert set(trainer.evaluate(val)) >= {"loss", "perplexity"}
