"""A ladder's own outlook where its compute multiplier is withheld: how often more rungs (continuing each
contender's spacing) or more seeds a rung would identify it, in ladders simulated from the study's two fits and
its measured seed noise, and the cheapest option that would."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cleangpt_core.experiments.scaling_fit import Point, PowerLaw, Runs, fit_points, identification

OUTLOOK_STUDIES = 60
OUTLOOK_RESAMPLES = 200
OUTLOOK_TARGET = 0.8  # an option "identifies" the multiplier when it is given in this share of simulated ladders


def _extended(points: Sequence[Point], rungs: int) -> np.ndarray:
    """The contender's rung computes continued at its mean spacing in log compute to `rungs` rungs."""
    computes = np.array(sorted({p.compute for p in points}))
    step = math.log(computes[-1] / computes[0]) / (computes.size - 1)
    return np.concatenate([computes, computes[-1] * np.exp(step * np.arange(1, rungs - computes.size + 1))])


def _outlook_noise(points: Sequence[Point], law: PowerLaw, rungs: int) -> np.ndarray | None:
    """The seed sd at each of `rungs` rungs: the runs' noise model at theirs and its largest rung's beyond (or,
    with one seed a rung, the fit's residual sd where it has spare points); None where neither is measured."""
    runs = Runs.of(points, 0.0)
    if runs.df > 0:
        noise = runs.noise()[0]
    elif len(points) > 3:
        residual = math.fsum((p.loss - float(law.loss(p.compute))) ** 2 for p in points) / (len(points) - 3)
        noise = np.full(runs.rungs, math.sqrt(residual))
    else:
        return None
    return np.concatenate([noise, np.full(rungs - noise.size, noise[-1])])


def identification_outlook(
    reference: Sequence[Point], other: Sequence[Point], at: float, *, studies: int = OUTLOOK_STUDIES, seed: int = 0
) -> dict[str, Any] | None:
    """How often the multiplier would be identified with more rungs (continuing each contender's spacing) or
    more seeds a rung, in ladders simulated from the two fits and seed noise (`studies` per option), and the
    cheapest option (by training compute) that reaches `OUTLOOK_TARGET`; None where no noise is measured."""
    laws = [fit_points(reference), fit_points(other)]
    rungs = len({p.compute for p in reference})
    seeds = max(sum(p.rung == rung for p in reference) for rung in {p.rung for p in reference})
    options = [(rungs + more, seeds) for more in (1, 2, 4)] + [(rungs, s) for s in (3, 5, 8) if s > seeds]
    noises = [_outlook_noise(points, law, rungs + 4) for points, law in zip((reference, other), laws, strict=True)]
    if noises[0] is None or noises[1] is None:
        return None
    generator = np.random.default_rng(seed)
    current = sum(p.compute for p in (*reference, *other))
    found = []
    for option_rungs, option_seeds in options:
        computes = [_extended(points, option_rungs) for points in (reference, other)]
        cost = sum(float(c.sum()) * option_seeds for c in computes) / current
        identified = 0
        for _ in range(studies):
            drawn = [
                [
                    Point(rung, float(c), float(law.loss(c)) + float(noise[rung]) * generator.normal())
                    for rung, c in enumerate(compute)
                    for _ in range(option_seeds)
                ]
                for compute, law, noise in zip(computes, laws, noises, strict=True)
            ]
            largest = float(computes[0][-1])
            identified += identification(drawn[0], drawn[1], largest, resamples=OUTLOOK_RESAMPLES, seed=seed) is None
        more = option_rungs - rungs
        change = f"{more} more rung{'s' if more > 1 else ''}" if more else f"{option_seeds} seeds a rung"
        found.append(
            {
                "change": change,
                "rungs": option_rungs,
                "seeds": option_seeds,
                "compute": cost,
                "identified": identified / studies,
            }
        )
    enough = [option for option in found if option["identified"] >= OUTLOOK_TARGET]
    cheapest = min(enough, key=lambda option: option["compute"]) if enough else None
    return {
        "studies": studies,
        "target": OUTLOOK_TARGET,
        "options": found,
        "enough": None
        if cheapest is None
        else f"{cheapest['change']} ({cheapest['compute']:.1f}× this ladder's training compute) would reach "
        f"{100 * OUTLOOK_TARGET:.0f} %",
    }
