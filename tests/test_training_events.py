"""Training events reach plugins (hooks) and callback objects; a broken observer never stops training."""

from __future__ import annotations

import json

import pytest

from cleangpt_core.testing.trainer import build_tiny_trainer
from cleangpt_core.trainers.metrics import read_metrics

RECORDING_PLUGIN = """
from cleangpt_core.plugin_api import hookimpl

CLEANGPT_PLUGIN_API = "1.0"
EVENTS = []


@hookimpl
def cleangpt_on_train_begin(trainer):
    EVENTS.append(("train_begin", trainer.progress.step))


@hookimpl
def cleangpt_on_train_end(trainer, stats):
    EVENTS.append(("train_end", stats["steps"]))


@hookimpl
def cleangpt_on_epoch_begin(epoch):
    EVENTS.append(("epoch_begin", epoch))


@hookimpl
def cleangpt_on_epoch_end(trainer, epoch):
    EVENTS.append(("epoch_end", epoch))


@hookimpl
def cleangpt_on_step_begin(step):
    EVENTS.append(("step_begin", step))


@hookimpl
def cleangpt_on_step_end(step, metrics):
    EVENTS.append(("step_end", step, sorted(metrics)))


@hookimpl
def cleangpt_on_evaluation_begin(step):
    EVENTS.append(("evaluation_begin", step))


@hookimpl
def cleangpt_on_evaluation_end(step, metrics):
    EVENTS.append(("evaluation_end", step, sorted(metrics)))


@hookimpl
def cleangpt_on_checkpoint_saved(step, path):
    EVENTS.append(("checkpoint_saved", step, path.name, (path / "model.safetensors").is_file()))
"""

METRIC_KEYS = ["epoch", "loss", "lr", "step_time_s", "tokens", "tokens_per_s"]
EVAL_KEYS = ["loss", "perplexity", "stderr", "tokens"]


def test_a_plugin_observes_every_training_event_in_order(install_plugin, tmp_path):
    import importlib

    module = importlib.import_module(install_plugin("cleangpt-recorder", RECORDING_PLUGIN))
    build_tiny_trainer(
        "simple", output_dir=tmp_path, num_epochs=2, max_steps=14, eval_interval=7, checkpoint_interval=14
    ).train()
    events = module.EVENTS
    assert events[0] == ("train_begin", 0)
    assert events[1] == ("epoch_begin", 0)
    assert events[2:4] == [("step_begin", 1), ("step_end", 1, METRIC_KEYS)]
    assert ("evaluation_begin", 7) in events and ("evaluation_end", 7, EVAL_KEYS) in events
    assert events.index(("epoch_end", 0)) < events.index(("epoch_begin", 1)) < events.index(("step_begin", 13))
    assert ("checkpoint_saved", 14, "step-00000014", True) in events
    assert events[-1] == ("train_end", 14)
    assert [event[1] for event in events if event[0] == "step_end"] == list(range(1, 15))


class Recorder:
    def __init__(self):
        self.calls = []

    def on_train_begin(self, trainer):
        self.calls.append("train_begin")

    def on_step_end(self, step):  # a callback may take fewer arguments than the event has
        self.calls.append(f"step {step}")

    def on_train_end(self, **everything):
        self.calls.append(f"train_end {sorted(everything)}")


def test_a_callback_object_receives_the_events_it_has_methods_for():
    recorder = Recorder()
    build_tiny_trainer("advanced", max_steps=2, callbacks=[recorder]).train()
    assert recorder.calls == ["train_begin", "step 1", "step 2", "train_end ['stats', 'trainer']"]


class Broken:
    def __init__(self):
        self.calls = 0

    def on_step_end(self, step):
        self.calls += 1
        raise RuntimeError("observer bug")


def test_a_raising_callback_is_reported_once_and_training_goes_on():
    broken, recorder = Broken(), Recorder()
    trainer = build_tiny_trainer("simple", max_steps=4, callbacks=[broken, recorder])
    with pytest.warns(RuntimeWarning, match=r"Broken.on_step_end raised RuntimeError: observer bug"):
        stats = trainer.train()
    assert stats["steps"] == 4 and broken.calls == 1
    assert recorder.calls[1:5] == ["step 1", "step 2", "step 3", "step 4"]
    assert len(trainer.events.failures) == 1


def test_a_raising_plugin_hook_does_not_stop_training(install_plugin):
    install_plugin(
        "cleangpt-crashy",
        """
        from cleangpt_core.plugin_api import hookimpl

        CLEANGPT_PLUGIN_API = "1.0"


        @hookimpl
        def cleangpt_on_step_begin(step):
            raise ValueError("plugin bug")
        """,
    )
    recorder = Recorder()
    with pytest.warns(RuntimeWarning, match="plugin cleangpt-crashy.*plugin bug"):
        stats = build_tiny_trainer("simple", max_steps=3, callbacks=[recorder]).train()
    assert stats["steps"] == 3 and recorder.calls[1:4] == ["step 1", "step 2", "step 3"]


def test_the_metrics_logger_writes_json_lines_and_a_loss_curve(tmp_path):
    build_tiny_trainer(
        "advanced", output_dir=tmp_path, num_epochs=2, max_steps=20, log_interval=5, eval_interval=10
    ).train()
    records = read_metrics(tmp_path / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert set(train[0]) >= {"step", "epoch", "loss", "lr", "tokens_per_s", "tokens"}
    assert [r["step"] for r in val] == [10, 20]  # one row per step: at the last, the final (complete) evaluation
    assert all(r["val_perplexity"] > 1 for r in val)
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class StopAt:
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, step):
        if step == self.step:
            trainer.request_stop("asked to")


def test_a_run_stopped_right_after_a_complete_evaluation_records_it_once(tmp_path):
    trainer = build_tiny_trainer(
        "simple", output_dir=tmp_path, max_steps=20, eval_interval=2, callbacks=[StopAt(4)]
    )
    stats = trainer.train()
    val = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in val] == [2, 4]
    assert stats["val_loss"] == val[-1]["val_loss"] and stats["steps"] == 4


def test_the_metrics_logger_can_be_turned_off(tmp_path):
    build_tiny_trainer("simple", output_dir=tmp_path, max_steps=3, log_metrics=False).train()
    assert not (tmp_path / "metrics.jsonl").exists()
    assert (tmp_path / "latest").is_file()


def test_a_resumed_run_continues_the_metrics_file_without_repeating_steps(tmp_path):
    from cleangpt_core.testing.trainer import StopAtStep

    options = {"output_dir": tmp_path, "num_epochs": 2, "max_steps": 20, "log_interval": 2, "checkpoint_interval": 6}
    build_tiny_trainer("simple", callbacks=[StopAtStep(8)], **options).train()
    # a killed run may have logged past its checkpoint: the resumed run drops those lines
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": 9, "loss": 1.0}) + "\n")
    (tmp_path / "latest").write_text("checkpoints/step-00000006\n")
    build_tiny_trainer("simple", **options).train(resume_from=tmp_path)
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(2, 21, 2))


def _killed_and_resumed(run_dir, trainer_type, options, drop_record: bool = False):
    """A run stopped at step 4 as a kill would leave it (its latest checkpoint is step 3; its metrics lines after
    that are dropped on resume), then resumed to the end."""
    from cleangpt_core.testing.trainer import StopAtStep

    build_tiny_trainer(trainer_type, output_dir=run_dir, callbacks=[StopAtStep(4)], **options).train()
    (run_dir / "latest").write_text("checkpoints/step-00000003\n")
    if drop_record:  # a checkpoint written before the unlogged losses were recorded
        state = run_dir / "checkpoints" / "step-00000003" / "trainer_state.json"
        payload = json.loads(state.read_text())
        del payload["state"]["unlogged_losses"]
        state.write_text(json.dumps(payload))
    build_tiny_trainer(trainer_type, output_dir=run_dir, **options).train(resume_from=run_dir)
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


@pytest.mark.slow  # three tiny runs: 7-13 s on the 2-core machine
@pytest.mark.parametrize("trainer_type", ["simple", "advanced"])
def test_a_run_resumed_mid_logging_interval_logs_the_train_losses_of_one_that_never_stopped(tmp_path, trainer_type):
    """The steps between the last metrics line and the checkpoint are in the checkpoint, so the first line after
    the resume averages all of its interval's steps (compare's train loss column is that line)."""
    options = {"max_steps": 12, "log_interval": 5, "checkpoint_interval": 3}
    build_tiny_trainer(trainer_type, output_dir=tmp_path / "straight", **options).train()
    straight = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if "loss" in r]
    assert [step for step, _ in straight] == [5, 10, 12]
    assert _killed_and_resumed(tmp_path / "resumed", trainer_type, options) == straight  # bitwise


@pytest.mark.slow
def test_a_checkpoint_without_unlogged_losses_resumes_and_its_first_line_averages_the_new_steps(tmp_path):
    options = {"max_steps": 12, "log_interval": 5, "checkpoint_interval": 3}
    build_tiny_trainer("simple", output_dir=tmp_path / "straight", **options).train()
    straight = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if "loss" in r]
    resumed = _killed_and_resumed(tmp_path / "old", "simple", options, drop_record=True)
    assert [step for step, _ in resumed] == [5, 10, 12] and resumed[1:] == straight[1:]
    assert resumed[0][1] != straight[0][1]  # steps 4 and 5 only, as every run resumed before did
