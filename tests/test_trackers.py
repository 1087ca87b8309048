"""Experiment trackers: chosen by ``logging.report_to``, read back with each tool's own reader, across a kill.

Every tracker's record is compared step for step with ``metrics.jsonl`` (logged at every step here): a run
killed with SIGKILL between two checkpoints and resumed must show each step once, with the losses of
``metrics.jsonl``. The readers are the tools' own: TensorBoard's ``EventAccumulator``, ``mlflow.MlflowClient``
on the SQLite store, and ``wandb leet inspect --json`` on the offline W&B run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.config import tracking as catalog
from cleangpt_core.config.experiment import load_experiment_config
from cleangpt_core.errors import ConfigError
from cleangpt_core.trainers.metrics import read_metrics

STEPS, CHECKPOINT_EVERY, KILL_AT = 14, 5, 12  # killed two steps after the checkpoint of step 10

TINY = {
    "model.n_layer": 1,
    "model.n_head": 2,
    "model.n_embd": 32,
    "model.block_size": 32,
    "data.eval_batch_size": 512,
    "trainer.max_steps": STEPS,
    "schedule.warmup_steps": 1,
    "trainer.eval_interval": 4,
    "trainer.eval_max_batches": 2,
    "trainer.checkpoint_interval": CHECKPOINT_EVERY,
    "trainer.log_interval": 1,
    "output.sample_tokens": 0,
    "logging.sample_tokens": 8,
}

# Trains through the Python API like `cleangpt train`; with a kill step, the process SIGKILLs itself after
# that optimizer step, a deterministic stand-in for a crash between two checkpoints. It waits 2 s first:
# W&B writes its offline file every WANDB__TRANSACTION_LOG_FLUSH_INTERVAL seconds, so a crash sooner than that
# after a checkpoint would lose W&B's own copy of the last steps (W&B's buffering, which no API flushes).
DRIVER = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from cleangpt_core.config.experiment import load_experiment_config
    from cleangpt_core.experiments.training_run import resume_config, run_experiment

    run_dir, kill_at, overrides = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]

    class KillAt:
        def on_step_end(self, step):
            if step == kill_at:
                time.sleep(2.0)
                os.kill(os.getpid(), signal.SIGKILL)

    if (run_dir / "latest").is_file():
        config, checkpoint = resume_config(run_dir)
        run_experiment(config, resume_from=checkpoint, echo=lambda line: None)
    else:
        config = load_experiment_config(overrides=overrides)
        run_experiment(config, echo=lambda line: None, callbacks=[KillAt()])
    """
)


def overrides(run_dir: Path, report_to: str, **extra: object) -> list[str]:
    settings = {**TINY, "output.dir": run_dir, "logging.report_to": report_to, **extra}
    return [f"{key}={value}" for key, value in settings.items()]


def train(tmp_path: Path, run_dir: Path, kill_at: int, settings: list[str]) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    environment = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "0.2",
    }
    return subprocess.run(
        [sys.executable, str(driver), str(run_dir), str(kill_at), *settings],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
    )


def jsonl_losses(run_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    records = read_metrics(run_dir / "metrics.jsonl")
    train = {r["step"]: r["loss"] for r in records if "loss" in r}
    val = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    return train, val


def tensorboard_scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def mlflow_history(run_dir: Path, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    state = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}")
    assert client.get_run(state["run_id"]).info.status == "FINISHED"
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(state["run_id"], key))


def wandb_history(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """History rows of every offline folder of the run (a resume opens a second folder for the same id)."""
    run_id = json.loads((run_dir / "trackers.json").read_text())["wandb"]["run_id"]
    rows: list[tuple[int, float]] = []
    for folder in sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}")):
        output = subprocess.run(
            [str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json", str(folder)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in output.splitlines():
            record = json.loads(line)
            item = record.get("history", {}).get("item", {}) if record.get("type") == "history" else {}
            if key in item:
                rows.append((int(item["_step"]), float(item[key])))
    return rows


def assert_matches(rows: list[tuple[int, float]], expected: dict[int, float], tolerance: float = 0.0) -> None:
    steps = [step for step, _ in rows]
    assert steps == sorted(expected), f"steps {steps} != {sorted(expected)}"  # each step once, in order
    for step, value in rows:
        assert value == pytest.approx(expected[step], rel=tolerance, abs=0), step


@pytest.mark.slow
def test_every_tracker_shows_the_losses_of_metrics_jsonl_across_a_kill_and_resume(tmp_path):
    run_dir = tmp_path / "runs" / "killed"
    settings = overrides(run_dir, "[tensorboard, mlflow, wandb]")
    killed = train(tmp_path, run_dir, KILL_AT, settings)
    assert killed.returncode == -9, killed.stderr
    assert (run_dir / "latest").read_text().strip().endswith(f"step-{CHECKPOINT_EVERY * 2:08d}")
    resumed = train(tmp_path, run_dir, 0, [])
    assert resumed.returncode == 0, resumed.stderr
    assert "RuntimeWarning" not in resumed.stderr, resumed.stderr

    train_loss, val_loss = jsonl_losses(run_dir)
    assert sorted(train_loss) == list(range(1, STEPS + 1))
    # TensorBoard stores float32; MLflow and W&B keep the float64 value
    assert_matches(tensorboard_scalars(run_dir / "tensorboard", "train/loss"), train_loss, tolerance=1e-6)
    assert_matches(tensorboard_scalars(run_dir / "tensorboard", "val/loss"), val_loss, tolerance=1e-6)
    assert_matches(mlflow_history(run_dir, "train/loss"), train_loss)
    assert_matches(mlflow_history(run_dir, "val/loss"), val_loss)
    assert_matches(wandb_history(run_dir, "train/loss"), train_loss)
    assert_matches(wandb_history(run_dir, "val/loss"), val_loss)
    check_tensorboard_texts_and_mlflow_params_and_artifacts(run_dir)


def check_tensorboard_texts_and_mlflow_params_and_artifacts(run_dir: Path) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    assert {"train/loss", "train/lr", "train/tokens_per_s", "train/grad_norm", "val/loss"} <= set(tags["scalars"])
    assert [event.step for event in accumulator.Tensors("config/text_summary")] == [0]
    assert [event.step for event in accumulator.Tensors("sample/text_summary")] == [4, 8, 12, STEPS]

    state = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    params = client.get_run(state["run_id"]).data.params
    assert params["model.n_embd"] == "32"
    assert params["logging.report_to"] == str(["tensorboard", "mlflow", "wandb"])
    artifacts = {item.path for item in client.list_artifacts(state["run_id"], "checkpoint")}
    assert {"checkpoint/model.safetensors", "checkpoint/tokenizer"} <= artifacts
    assert {item.path for item in client.list_artifacts(state["run_id"], "samples")} == {
        f"samples/step-{step:08d}.txt" for step in (4, 8, 12, STEPS)
    }


@pytest.mark.slow
def test_a_tracker_that_fails_mid_run_is_dropped_and_the_run_finishes(tmp_path):
    # the MLflow run is deleted from its store while training (as from the MLflow UI): the next write fails
    run_dir = tmp_path / "runs" / "deleted"
    settings = overrides(run_dir, "[mlflow, tensorboard]")
    delete = textwrap.dedent(
        """
        class DeleteMlflowRun:
            def on_step_end(self, step):
                if step == 2:
                    import json
                    from mlflow.tracking import MlflowClient
                    state = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
                    MlflowClient(state["tracking_uri"]).delete_run(state["run_id"])
        """
    )
    driver = DRIVER.replace("callbacks=[KillAt()]", "callbacks=[KillAt(), DeleteMlflowRun()]")
    driver = driver.replace("if (run_dir", delete + "\nif (run_dir", 1)
    (tmp_path / "driver.py").write_text(driver)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(run_dir), "0", *settings],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "tracker 'mlflow' raised" in result.stderr and "dropped" in result.stderr
    assert (run_dir / "latest").read_text().strip().endswith(f"step-{STEPS:08d}")
    train_loss, _ = jsonl_losses(run_dir)
    assert_matches(tensorboard_scalars(run_dir / "tensorboard", "train/loss"), train_loss, tolerance=1e-6)


def test_report_to_takes_a_name_a_comma_list_or_a_list():
    assert load_experiment_config(overrides=["logging.report_to=wandb"]).logging.report_to == ["wandb"]
    config = load_experiment_config(overrides=["logging.report_to=TensorBoard,mlflow"])
    assert config.logging.report_to == ["tensorboard", "mlflow"]
    assert load_experiment_config().logging.report_to == []


def test_an_unknown_tracker_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'; trackers are: tensorboard, mlflow, wandb"):
        load_experiment_config(overrides=["logging.report_to=tensorbored"])


def test_a_tracker_without_its_package_fails_before_training_saying_what_to_install(tmp_path, monkeypatch):
    # stands in for an environment without mlflow (it is installed here, and a test cannot uninstall it)
    monkeypatch.setitem(
        catalog.TRACKERS, "mlflow", catalog.TrackerSpec("mlflow", "", "x:y", ("cleangpt_no_such_package",), "mlflow")
    )
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--set", f"output.dir={run_dir}", "--set", "logging.report_to=mlflow"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: logging.report_to names 'mlflow', which needs cleangpt_no_such_package (not installed): "
        'pip install "cleangpt-core[mlflow]"'
    ]
    assert not run_dir.exists()
