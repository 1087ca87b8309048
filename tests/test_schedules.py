"""The built-in learning-rate schedules against their definitions, step by step, and their lengths relative to
the run: a fraction of it, or steps shortened with a warning where the user did not set them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tiny_runs import TINY, set_options

from cleangpt_core.checkpoints.run_dir import RunDirectory
from cleangpt_core.cli.main import cli
from cleangpt_core.config import ExperimentConfig, load_experiment_config
from cleangpt_core.config.experiment import DEFAULT_WARMUP_FRACTION
from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.planning import build_plan
from cleangpt_core.trainers.optim_factory import fit_schedule
from cleangpt_core.trainers.schedules import constant_schedule, cosine_schedule, linear_schedule, wsd_schedule

CONFIGS = Path(__file__).parents[1] / "configs"


def multipliers(build, total_steps: int, **options) -> list[float]:
    """The learning rate of each optimizer step, as a fraction of a peak of 1."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build(optimizer, total_steps=total_steps, **options)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_constant_warms_up_linearly_then_holds_the_peak():
    rates = multipliers(constant_schedule, 10, warmup_steps=4)
    assert rates[:4] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5])
    assert rates[4:] == pytest.approx([1.0] * 6)


def test_wsd_holds_the_peak_then_cools_down_linearly_over_the_last_fraction():
    rates = multipliers(wsd_schedule, 100, warmup_steps=10, decay_fraction=0.2)
    assert rates[0] == pytest.approx(1 / 11) and rates[9] == pytest.approx(10 / 11)
    assert rates[10:81] == pytest.approx([1.0] * 71)
    assert rates[90] == pytest.approx(0.5)
    assert rates[99] == pytest.approx(1 / 20)  # one cool-down step from zero


def test_wsd_ends_at_its_floor():
    rates = multipliers(wsd_schedule, 10, decay_fraction=0.5, min_lr_ratio=0.1)
    assert rates[5] == pytest.approx(1.0)
    assert rates[9] == pytest.approx(1.0 - 0.8 * 0.9)


def test_cosine_reaches_its_floor_at_the_decay_step_and_stays_there():
    rates = multipliers(cosine_schedule, 30, warmup_steps=0, decay_steps=20, min_lr_ratio=0.1)
    assert rates[0] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(0.1 + 0.5 * 0.9)
    assert rates[20:] == pytest.approx([0.1] * 10)


def test_linear_decays_from_the_peak_after_warmup():
    rates = multipliers(linear_schedule, 100)
    assert rates[0] == pytest.approx(1.0) and rates[50] == pytest.approx(0.5) and rates[99] == pytest.approx(0.01)


@pytest.mark.parametrize("build", [cosine_schedule, linear_schedule, wsd_schedule])
def test_a_warmup_longer_than_the_run_is_refused_by_name(build):
    with pytest.raises(ConfigError, match="warmup_steps=50"):
        multipliers(build, 40, warmup_steps=50)


def test_the_schedule_resumes_from_its_state_dict():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = wsd_schedule(optimizer, total_steps=20, decay_fraction=0.5)
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    fresh_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    fresh = wsd_schedule(fresh_optimizer, total_steps=20, decay_fraction=0.5)
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == pytest.approx(0.8)


# -- lengths relative to the run -----------------------------------------------------------------------------


@pytest.mark.parametrize("build", [constant_schedule, cosine_schedule, linear_schedule, wsd_schedule])
def test_a_warmup_given_as_a_fraction_is_that_share_of_the_run(build):
    short, long = multipliers(build, 40, warmup_steps=0.05), multipliers(build, 400, warmup_steps=0.05)
    assert short[:2] == pytest.approx([1 / 3, 2 / 3]) and short[2] == pytest.approx(1.0)  # 2 of 40 steps
    assert long[19] == pytest.approx(20 / 21) and long[20] == pytest.approx(1.0)  # 20 of 400


def test_a_cosine_decay_given_as_a_fraction_ends_at_that_share_of_the_run():
    rates = multipliers(cosine_schedule, 40, decay_steps=0.5, min_lr_ratio=0.1)
    assert rates[19] > 0.1 and rates[20:] == pytest.approx([0.1] * 20)


@pytest.mark.parametrize(("value", "message"), [(1.5, "fraction of the run between 0 and 1"), (-3, "negative")])
def test_a_length_neither_steps_nor_a_fraction_is_refused_by_name(value, message):
    with pytest.raises(ConfigError, match=f"schedule 'cosine': warmup_steps: .*{message}"):
        load_experiment_config(overrides=[f"schedule.warmup_steps={value}"])


def test_a_warmup_too_long_for_the_run_is_shortened_with_a_warning_where_the_user_did_not_set_it():
    options, warning = fit_schedule("cosine", {"warmup_steps": 100}, 40, shorten_warmup=True)
    assert options == {"warmup_steps": DEFAULT_WARMUP_FRACTION}
    assert "warm-up of 100 steps" in warning and "40-step run" in warning and "schedule.warmup_steps" in warning
    assert fit_schedule("cosine", {"warmup_steps": 10}, 40, shorten_warmup=True) == ({"warmup_steps": 10}, None)
    with pytest.raises(ConfigError, match="warmup_steps=100 leaves no room"):
        fit_schedule("cosine", {"warmup_steps": 100}, 40, shorten_warmup=False)


def test_the_recipes_state_their_warmup_as_a_share_of_the_run():
    assert ExperimentConfig().schedule.options["warmup_steps"] == DEFAULT_WARMUP_FRACTION
    nanogpt = load_experiment_config(CONFIGS / "shakespeare_char.yaml")
    assert nanogpt.schedule.options["warmup_steps"] == 0.05  # nanoGPT's 100 of its 2000 steps


def test_a_short_run_of_a_config_with_a_long_warmup_trains_with_one_warning(tmp_path):
    config_file = tmp_path / "long_warmup.yaml"
    config_file.write_text("schedule: {name: wsd, warmup_steps: 100}\n")
    run_dir = tmp_path / "run"
    tiny = [override for override in TINY if not override.startswith("schedule.")]  # the file's warm-up stands
    overrides = set_options(*tiny, "trainer.max_steps=6", "data.eval_batch_size=512", f"output.dir={run_dir}")
    result = CliRunner().invoke(cli, ["train", "--config", str(config_file), *overrides])
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: schedule 'wsd': the warm-up of 100 steps") == 1
    saved = json.loads((RunDirectory(run_dir).latest() / "experiment.json").read_text())
    assert saved["schedule"]["warmup_steps"] == DEFAULT_WARMUP_FRACTION  # the run records what it trained with


def test_a_warmup_set_on_the_command_line_that_does_not_fit_is_refused_before_training(tmp_path):
    overrides = set_options(*TINY, "schedule.warmup_steps=100", "trainer.max_steps=6", f"output.dir={tmp_path}")
    result = CliRunner().invoke(cli, ["train", *overrides])
    assert result.exit_code == 1 and "warmup_steps=100 leaves no room" in result.output
    assert not RunDirectory(tmp_path).holds_run()


def test_small_ladder_rungs_plan_on_the_default_recipe(tmp_path):
    rungs = ["model.n_embd=16,32,48", "model.n_head=2,2,2"]
    plan = build_plan(tmp_path, models=["Vanilla"], ladder=rungs, max_tokens=50 * 16 * 64)  # 50 steps of 16 x 64
    assert set(plan.max_steps.values()) == {50}
