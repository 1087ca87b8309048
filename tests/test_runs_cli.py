"""`cleangpt runs [DIR]`: every run and comparison under a folder, its state (running, finished, interrupted with
the command that continues it), steps, tokens, best and final validation loss, the config keys that differ;
`--json`; and `--tensorboard`, which lets `tensorboard --logdir DIR` show every run's curves."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_runs import TINY

from cleangpt_core.checkpoints.run_dir import RunDirectory
from cleangpt_core.cli.main import cli
from cleangpt_core.config import load_experiment_config
from cleangpt_core.experiments.training_run import run_experiment
from cleangpt_core.trainers.interrupts import StopRequested, stop_on_signals


def train(run_dir: Path, *overrides: str, callbacks: tuple = ()) -> None:
    config = load_experiment_config(
        None, [*TINY, "trainer.max_steps=6", "data.eval_batch_size=512", f"output.dir={run_dir}", *overrides]
    )
    run_experiment(config, echo=lambda line: None, callbacks=callbacks)


class StopAt:
    """Sends this process SIGTERM at the end of a step, as a scheduler would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, step: int) -> None:
        if step == self.step:
            signal.raise_signal(signal.SIGTERM)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A folder with a finished run, a wider one, and one a SIGTERM stopped at step 3."""
    root = tmp_path_factory.mktemp("runs")
    train(root / "small")
    train(root / "wide", "model.n_embd=32")
    with stop_on_signals(), pytest.raises(StopRequested):
        train(root / "stopped", "trainer.checkpoint_interval=100", callbacks=(StopAt(3),))
    return root


def listing(root: Path) -> dict:
    result = CliRunner().invoke(cli, ["runs", str(root), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {Path(run["path"]).name: run for run in json.loads(result.output)["runs"]}


def test_each_run_has_its_state_steps_tokens_and_losses(runs):
    found = listing(runs)
    assert set(found) == {"small", "wide", "stopped"}
    small = found["small"]
    assert (small["state"], small["step"], small["max_steps"], small["tokens"]) == ("finished", 6, 6, 6 * 4 * 16)
    metrics = [json.loads(line) for line in (runs / "small" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["val_loss"] for r in metrics if "val_loss" in r]
    assert small["best_val_loss"] == min(losses) and small["final_val_loss"] == losses[-1]
    stopped = found["stopped"]
    assert (stopped["state"], stopped["step"], stopped["final_val_loss"]) == ("interrupted", 3, None)
    assert stopped["resume"] == f"cleangpt train --resume {runs / 'stopped'}"


def test_the_config_keys_that_differ_are_named_per_run(runs):
    found = listing(runs)
    assert found["wide"]["differs"]["model.n_embd"] == 32 and found["small"]["differs"]["model.n_embd"] == 16
    assert found["stopped"]["differs"]["trainer.checkpoint_interval"] == 100
    assert "output.dir" not in found["small"]["differs"]  # every run has its own; no difference worth naming
    assert "model.n_layer" not in found["small"]["differs"]  # the same in all


def test_a_run_whose_lock_is_held_by_a_live_process_is_running(runs):
    with RunDirectory(runs / "stopped").lock():  # held by this (live) process, as a training one holds it
        assert listing(runs)["stopped"]["state"] == "running"
    assert listing(runs)["stopped"]["state"] == "interrupted"


def test_the_table_lists_the_runs_and_how_to_continue_the_interrupted_one(runs):
    result = CliRunner().invoke(cli, ["runs", str(runs)])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.split("\n\n")[0].splitlines()
    assert header.split() == ["run", "state", "steps", "tokens", "best", "val", "final", "val", "differs"]
    assert any(row.startswith(str(runs / "small")) and " finished " in row and " 6/6 " in row for row in rows)
    assert f"continue with:\n  cleangpt train --resume {runs / 'stopped'}" in result.output


def test_a_comparison_is_listed_with_its_runs_and_its_resume_command(tmp_path):
    out = tmp_path / "compare"
    result = CliRunner().invoke(
        cli,
        ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", "4", "--out", str(out)]
        + [part for override in [*TINY, "data.eval_batch_size=512"] for part in ("--set", override)],
    )
    assert result.exit_code == 0, result.output
    (out / "report.json").unlink()  # as if stopped before its report
    shown = json.loads(CliRunner().invoke(cli, ["runs", str(tmp_path), "--json"]).output)
    comparison = shown["comparisons"][0]
    assert (comparison["path"], comparison["runs"], comparison["finished"]) == (str(out), 2, 2)
    assert (comparison["state"], comparison["resume"]) == ("interrupted", f"cleangpt compare --resume {out}")
    assert [run["comparison"] for run in shown["runs"]] == [str(out)] * 2
    assert {run["state"] for run in shown["runs"]} == {"finished"}
    assert {json.dumps(run["differs"]) for run in shown["runs"]} == {'{"seed": 1337}', '{"seed": 1338}'}


def test_tensorboard_files_are_written_from_the_metrics_so_one_logdir_shows_every_run(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for _ in range(2):  # written again, they replace their own files rather than adding to them
        result = CliRunner().invoke(cli, ["runs", str(runs), "--tensorboard"])
        assert result.exit_code == 0, result.output
    assert f"tensorboard --logdir {runs}" in result.output
    events = runs / "small" / "tensorboard"
    assert len(list(events.glob("events.out.tfevents.*"))) == 1
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    metrics = [json.loads(line) for line in (runs / "small" / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in accumulator.Scalars("train/loss")] == [r["step"] for r in metrics if "loss" in r]
    assert [e.value for e in accumulator.Scalars("val/loss")] == pytest.approx(
        [r["val_loss"] for r in metrics if "val_loss" in r]
    )


def test_an_empty_folder_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["runs", str(tmp_path)])
    assert result.exit_code == 0 and f"no runs under {tmp_path}" in result.output
