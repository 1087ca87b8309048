"""Evaluation is bounded by default and visible as it goes; a piped training run shows its progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.data.progress import EvaluationProgress

SHAKESPEARE_VALIDATION_TARGETS = 111_540 - 1


def tiny(run_dir: Path, *extra: str) -> list[str]:
    settings = {
        "model.n_layer": 1,
        "model.n_head": 2,
        "model.n_embd": 32,
        "model.block_size": 32,
        "data.eval_batch_size": 512,
        "trainer.max_steps": 6,
        "trainer.log_interval": 2,
        "schedule.warmup_steps": 1,
        "trainer.eval_interval": 3,
        "trainer.eval_max_batches": 1,
        "trainer.mixed_precision": "no",
        "output.sample_tokens": 0,
        "output.dir": run_dir,
    }
    pairs = [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]
    return [*pairs, *(part for setting in extra for part in ("--set", setting))]


def invoke(*arguments: str | Path):
    result = CliRunner().invoke(cli, [str(argument) for argument in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory) -> tuple[Path, str]:
    """A tiny run whose final evaluation is capped at 1,000 tokens, trained with output to a pipe (no bar)."""
    run_dir = tmp_path_factory.mktemp("bounded") / "run"
    return run_dir, invoke("train", *tiny(run_dir, "data.eval_tokens=1000")).output


def test_a_piped_run_writes_a_line_every_log_interval_steps(piped_run):
    _, output = piped_run
    for step in (2, 4, 6):
        assert f"step {step}/6: loss " in output, output
    assert "step 3/6: validation loss" in output and "tokens/s" in output


def test_the_final_evaluation_scores_data_eval_tokens_and_says_so(piped_run):
    _, output = piped_run
    assert "validation loss" in output and "over 1,000 tokens" in output, output


def test_evaluate_scores_the_runs_cap_or_what_it_is_told(piped_run):
    run_dir, _ = piped_run
    # stdout alone: a slow evaluation's progress lines go to stderr, and the JSON stays clean
    capped = json.loads(invoke("evaluate", run_dir, "--json").stdout)
    assert capped["tokens"] == 1000 and capped["split_tokens"] == SHAKESPEARE_VALIDATION_TARGETS
    everything = json.loads(invoke("evaluate", run_dir, "--json", "--max-tokens", "all").stdout)
    assert everything["tokens"] == SHAKESPEARE_VALIDATION_TARGETS
    text = invoke("evaluate", run_dir, "--max-tokens", "2,000").stdout
    assert f"over 2,000 tokens of its {SHAKESPEARE_VALIDATION_TARGETS:,} (--max-tokens all)" in text


def test_a_bad_max_tokens_is_a_usage_error(piped_run):
    run_dir, _ = piped_run
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--max-tokens", "some"])
    assert result.exit_code == 2 and "neither a positive number of tokens nor 'all'" in result.output


def test_a_cap_shorter_than_a_window_is_refused_before_training(tmp_path):
    result = CliRunner().invoke(cli, ["train", *tiny(tmp_path / "run", "data.eval_tokens=10")])
    assert result.exit_code == 1 and "data.eval_tokens=10 is shorter than one window" in result.output
    assert not (tmp_path / "run").exists()


def test_evaluation_progress_writes_plain_lines_off_a_terminal(capsys):
    progress = EvaluationProgress("evaluate", total=4, every_s=0.0, terminal=False)
    progress.update(tokens=100)
    progress.update(tokens=100)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("evaluate: 1/4 batches, 100 tokens") and "s left" in lines[0]
    assert lines[1].startswith("evaluate: 2/4 batches, 200 tokens")


def test_evaluation_progress_is_silent_on_other_ranks(capsys):
    progress = EvaluationProgress("evaluate", total=4, every_s=0.0, terminal=False, enabled=False)
    progress.update(tokens=100)
    assert capsys.readouterr().err == ""
