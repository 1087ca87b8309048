"""Command-line inputs that used to end in a traceback or to lose work: each is one line, before any work
(issue 25, faults 9 and 11)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli


def one_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.output
    return result.output


@pytest.mark.parametrize("tasks", [",", " , ,", ""])
def test_lm_eval_tasks_that_name_no_task_are_one_line(tmp_path, tasks):
    output = one_line(CliRunner().invoke(cli, ["lm-eval", str(tmp_path), "--tasks", tasks]))
    expected = f"Error: --tasks {tasks!r} names no task; give e.g. --tasks hellaswag,arc_easy"
    assert output.strip().splitlines() == [expected]


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_lm_eval_limit_must_be_positive(tmp_path, limit):
    output = one_line(CliRunner().invoke(cli, ["lm-eval", str(tmp_path), "--tasks", "x", "--limit", limit]))
    assert "Invalid value for '--limit'" in output


def test_lm_eval_output_is_checked_before_the_evaluation(tmp_path, monkeypatch):
    import cleangpt_core.experiments.lm_eval_harness as harness

    def evaluate_tasks(*args, **kwargs):  # the evaluation must not even start
        raise AssertionError("the evaluation ran although its results could not be saved")

    monkeypatch.setattr(harness, "evaluate_tasks", evaluate_tasks)
    for output in (tmp_path / "nonexistent" / "x.json",):
        result = CliRunner().invoke(cli, ["lm-eval", str(tmp_path), "--tasks", "x", "--output", str(output)])
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert f"--output {str(output)!r}" in one_line(result)


# --- 7: compare's plan is bounded ---------------------------------------------------------------------------------


def test_compare_refuses_more_seeds_than_a_plan_can_hold_at_once(tmp_path):
    import time

    start = time.perf_counter()
    arguments = ["compare", "--model", "Vanilla", "--seeds", "10000000", "--out", str(tmp_path / "c")]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --seeds must be at most 1,000 (runs per contender), got 10,000,000; a plan is built and saved whole "
        "before the first run, so split a larger study into several comparisons"
    ]
    assert time.perf_counter() - start < 30 and not (tmp_path / "c").exists()
