"""A comparison's plan is bounded as a whole (issue 25, fault 7): contenders x seeds, and the tuning's trials x
tuning seeds, refused in one line before any config is read or any folder written."""

from __future__ import annotations

import time

import pytest
import yaml
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.planning import build_plan
from cleangpt_core.experiments.tuning_spec import tuning_spec

LR = "optimizer.lr=1e-4:1e-2:log"


def one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]


def test_many_contenders_times_many_seeds_are_refused_before_any_config_is_read(tmp_path):
    """Each contender within the seed bound, together over the run bound: once planned whole (minutes)."""
    comparison = tmp_path / "many.yaml"
    contenders = [{"name": f"c{i}", "set": [f"optimizer.lr={i + 1}e-3"]} for i in range(11)]
    comparison.write_text(yaml.safe_dump({"contenders": contenders, "seeds": 1000, "max_steps": 1000}))
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["compare", "--comparison", str(comparison), "--out", str(tmp_path / "c")])
    assert one_line(result) == (
        "Error: the comparison would train 11,000 runs (11 contenders x (1,000 seeds)), more than the 10,000 a plan "
        "may hold; it is built and saved whole before the first run, so split a larger study into several comparisons"
    )
    assert time.perf_counter() - start < 30 and not (tmp_path / "c").exists()


def test_an_ablation_of_many_levers_over_many_seeds_is_refused_the_same_way(tmp_path):
    config = tmp_path / "base.yaml"
    config.write_text("trainer:\n  max_steps: 1000\n")
    levers = [arg for i in range(10) for arg in ("--lever", f"l{i}=optimizer.lr={i + 1}e-3")]
    arguments = ["ablate", str(config), *levers, "--seeds", "1000", "--out", str(tmp_path / "a")]
    assert "would train 11,000 runs (11 contenders x (1,000 seeds))" in one_line(CliRunner().invoke(cli, arguments))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("sampler", ["grid", "tpe"])
def test_more_trials_than_a_plan_may_hold_are_refused_before_a_grid_is_built(sampler):
    with pytest.raises(ConfigError, match=r"^--trials must be at most 10,000 \(trials per contender\), got 100,000,"):
        tuning_spec([LR], trials=10**8, sampler=sampler)


def test_more_tuning_seeds_than_a_plan_may_hold_are_refused():
    with pytest.raises(ConfigError, match=r"^--tune-seeds must be between 1 and 1,000 \(runs per trial\), got 5,000"):
        tuning_spec([LR], trials=4, tune_seeds=5000)


def test_trials_times_tuning_seeds_times_contenders_count_against_the_plan(tmp_path):
    spec = tuning_spec([LR], trials=2000, tune_seeds=3)
    with pytest.raises(ConfigError, match=r"would train 12,002 runs \(2 contenders x \(1 seeds \+ 2,000 trials x 3 "):
        build_plan(tmp_path / "c", models=["Vanilla", "Llama"], max_steps=200, tuning=spec)
    assert not (tmp_path / "c").exists()
