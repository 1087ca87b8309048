"""The built-in learning-rate schedules against their definitions, step by step."""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.errors import ConfigError
from cleangpt_core.trainers.schedules import constant_schedule, cosine_schedule, linear_schedule, wsd_schedule


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
