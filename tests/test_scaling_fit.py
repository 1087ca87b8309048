"""The ladder's power-law fit (`cleangpt_core.experiments.scaling_fit`) on synthetic losses with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.scaling_fit import (
    Point,
    PowerLaw,
    Runs,
    bootstrap_multiplier,
    compute_multiplier,
    fit_points,
    forecast_check,
    matched_gaps,
    multiplier_estimate,
)

COMPUTE = np.geomspace(1e12, 1e15, 5)  # five rungs spanning 1000× in compute
TRUE = PowerLaw(floor=1.2, scale=3e3, alpha=0.3)
SHIFTED = PowerLaw(TRUE.floor, TRUE.scale * 2.0**-TRUE.alpha, TRUE.alpha)  # TRUE at twice the compute


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


def test_the_fit_is_the_weighted_least_squares_optimum():
    from scipy.optimize import curve_fit

    points = ladder(TRUE, noise=0.01, seeds=3)
    runs = Runs.of(points, 0.0)
    sigma = runs.noise()[0][runs.group]  # each run's rung's seed sd: the weights are 1/sigma²
    x, y = np.array([p.compute for p in points]), np.array([p.loss for p in points])
    found, _ = curve_fit(
        lambda c, e, log_a, alpha: e + np.exp(log_a - alpha * np.log(c)),
        x,
        y,
        p0=[TRUE.floor, math.log(TRUE.scale), TRUE.alpha],
        sigma=sigma,
        bounds=([0, -50, 0], [10, 50, 5]),
        xtol=1e-14,
        ftol=1e-14,
    )
    fit = fit_points(points)
    assert (fit.floor, math.log(fit.scale), fit.alpha) == (
        pytest.approx(found[0], rel=1e-4),
        pytest.approx(found[1], rel=1e-4),
        pytest.approx(found[2], rel=1e-4),
    )


def test_the_seed_noise_model_finds_noise_that_grows_towards_the_small_rungs():
    generator = np.random.default_rng(3)
    sd = np.geomspace(0.04, 0.01, COMPUTE.size)  # 4× at the smallest rung
    points = [
        Point(rung, float(c), float(TRUE.loss(c)) + sd[rung] * generator.normal())
        for rung, c in enumerate(COMPUTE)
        for _ in range(20)
    ]
    noise = Runs.of(points, 0.0).noise()[0]
    assert noise == pytest.approx(sd, rel=0.25)
    flat = Runs.of(ladder(TRUE, 0.01, seeds=20), 0.0).noise()[0]  # relative noise of 1 % at losses near 1.2-1.8
    assert flat.max() / flat.min() < 2.5


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


def bent(points: list[Point], drop: float) -> list[Point]:
    """The largest rung `drop` nats below the law: the curve bends down where the law flattens."""
    top = max(p.rung for p in points)
    return [p._replace(loss=p.loss - drop) if p.rung == top else p for p in points]


@pytest.mark.parametrize(
    ("other", "reference", "rule", "words"),
    [
        (ladder(SHIFTED, 0.002, 3, 2), bent(ladder(TRUE, 0.002, 3), 0.2), "forecast", "the reference's law missed"),
        (ladder(PowerLaw(0.0, 3e3, 0.3), 0.002, 3, 2), ladder(TRUE, 0.002, 3), "floor", "E is at its bound 0"),
        (ladder(PowerLaw(0.8, 3e3, 0.3), 0.002, 3, 2), ladder(TRUE, 0.002, 3), "unreachable", "at or below"),
        (ladder(PowerLaw(1.2, 3e3 * 50**-0.3, 0.3), 0.002, 3, 2), ladder(TRUE, 0.002, 3), "range", "too far"),
        (ladder(SHIFTED, 0.0, 1, 2), ladder(TRUE, 0.0, 1), "one seed", "one seed a rung"),
    ],
)
def test_a_multiplier_the_data_do_not_identify_is_withheld_with_its_rule(other, reference, rule, words):
    found = multiplier_estimate(reference, other, COMPUTE[-1])
    assert (found.value, found.low, found.high) == (None, None, None)
    assert found.withheld.rule == rule and words in found.withheld.reason
    assert bootstrap_multiplier(reference, other, COMPUTE[-1]) is None


def test_the_forecast_tolerance_grows_with_the_seed_noise():
    quiet, loud = forecast_check(ladder(TRUE, 0.002, 3)), forecast_check(ladder(TRUE, 0.02, 3))
    assert 0 < quiet["tolerance"] < loud["tolerance"]
    assert quiet["within"] and loud["within"]
    missed = forecast_check(bent(ladder(TRUE, 0.002, 3), 0.2))
    assert missed["error"] > missed["tolerance"] and not missed["within"]
    assert forecast_check(ladder(TRUE, 0.0, 1))["tolerance"] is None  # one seed a rung: no noise to judge by


def test_gaps_at_matched_compute_interpolate_inside_both_ranges():
    reference, other = ladder(TRUE, 0.002, 3), ladder(SHIFTED, 0.002, 3, 2)
    gaps = matched_gaps(reference, other)
    assert [gap.rung for gap in gaps] == [0, 1, 2, 3, 4]
    assert [gap.compute for gap in gaps] == pytest.approx(list(COMPUTE))
    for gap in gaps:  # the shifted law is lower at every compute; the interval holds the true gap
        truth = float(SHIFTED.loss(gap.compute) - TRUE.loss(gap.compute))
        assert gap.difference.low < truth < gap.difference.high < 0
    shorter = [p for p in other if p.rung < 3]
    assert matched_gaps(reference, shorter)[-1].compute == pytest.approx(
        COMPUTE[2]
    )  # clipped to the range both measured
