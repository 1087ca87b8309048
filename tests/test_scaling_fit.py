"""The ladder's power-law fit (`cleangpt_core.experiments.scaling_fit`) on synthetic losses with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.scaling_fit import (
    Point,
    PowerLaw,
    bootstrap_multiplier,
    compute_multiplier,
    fit_points,
    forecast_check,
)

COMPUTE = np.geomspace(1e12, 1e15, 5)  # five rungs spanning 1000× in compute
TRUE = PowerLaw(floor=1.2, scale=3e3, alpha=0.3)


def ladder(law: PowerLaw, noise: float, seeds: int = 2, generator_seed: int = 1) -> list[Point]:
    """Every rung's losses under `law`, each times exp(N(0, noise)): a relative error, as seeds scatter."""
    generator = np.random.default_rng(generator_seed)
    return [
        Point(rung, float(compute), float(law.loss(compute)) * math.exp(generator.normal(0, noise)))
        for rung, compute in enumerate(COMPUTE)
        for _ in range(seeds)
    ]


def test_the_fit_recovers_known_parameters_from_noisy_losses():
    fit = fit_points(ladder(TRUE, noise=0.003))
    assert fit.floor == pytest.approx(TRUE.floor, rel=0.02)
    assert fit.alpha == pytest.approx(TRUE.alpha, rel=0.05)
    assert fit.scale == pytest.approx(TRUE.scale, rel=0.3)  # A trades off against α: log A is the steadier figure
    assert fit.loss(COMPUTE[-1]) == pytest.approx(TRUE.loss(COMPUTE[-1]), abs=0.005)


def test_the_huber_loss_ignores_one_wild_run():
    points = ladder(TRUE, noise=0.001)
    points[3] = points[3]._replace(loss=points[3].loss * 1.5)  # one seed of rung 1 diverged half-way
    fit = fit_points(points)
    assert fit.alpha == pytest.approx(TRUE.alpha, rel=0.05)
    assert fit.floor == pytest.approx(TRUE.floor, rel=0.02)


def test_the_forecast_check_predicts_the_held_out_largest_rung():
    points = ladder(TRUE, noise=0.002)
    check = forecast_check(points)
    held_out = [p.loss for p in points if p.rung == 4]
    assert check["compute"] == COMPUTE[-1]
    assert check["measured"] == pytest.approx(sum(held_out) / 2)
    assert check["error"] == pytest.approx(check["predicted"] - check["measured"])
    assert abs(check["predicted"] - float(TRUE.loss(COMPUTE[-1]))) < 0.01


def test_the_forecast_check_needs_three_rungs_to_fit_besides_the_largest():
    assert forecast_check([p for p in ladder(TRUE, 0.0) if p.rung < 3]) is None


def test_the_compute_multiplier_of_a_law_shifted_by_a_known_factor():
    # X(C) = reference(k·C): X at any compute is as good as the reference with k times as much
    k = 2.5
    shifted = PowerLaw(TRUE.floor, TRUE.scale * k**-TRUE.alpha, TRUE.alpha)
    assert compute_multiplier(TRUE, shifted, COMPUTE[-1]) == pytest.approx(k)
    assert compute_multiplier(shifted, TRUE, COMPUTE[-1]) == pytest.approx(1 / k)
    fitted = compute_multiplier(fit_points(ladder(TRUE, 0.0005)), fit_points(ladder(shifted, 0.0005)), COMPUTE[-1])
    assert fitted == pytest.approx(k, rel=0.1)


def test_a_loss_below_the_reference_floor_is_an_infinite_multiplier():
    lower_floor = PowerLaw(TRUE.floor - 0.2, TRUE.scale, TRUE.alpha)
    assert compute_multiplier(TRUE, lower_floor, 1e30) == math.inf


def test_the_bootstrap_interval_is_deterministic_and_holds_the_point_estimate():
    shifted = PowerLaw(TRUE.floor, TRUE.scale * 2.0**-TRUE.alpha, TRUE.alpha)
    reference, other = ladder(TRUE, 0.002, seeds=3), ladder(shifted, 0.002, seeds=3, generator_seed=2)
    interval = bootstrap_multiplier(reference, other, COMPUTE[-1], resamples=20)
    assert interval == bootstrap_multiplier(reference, other, COMPUTE[-1], resamples=20)
    point = compute_multiplier(fit_points(reference), fit_points(other), COMPUTE[-1])
    assert interval[0] <= point <= interval[1]
    assert interval[0] < interval[1]


def test_one_seed_per_rung_has_no_bootstrap_interval():
    assert bootstrap_multiplier(ladder(TRUE, 0.0, seeds=1), ladder(TRUE, 0.0, seeds=1), COMPUTE[-1]) is None


def test_fewer_than_three_rungs_is_one_clear_error():
    with pytest.raises(ConfigError, match="at least 3 rungs"):
        fit_points([p for p in ladder(TRUE, 0.0) if p.rung < 2])
