"""Power laws of loss against compute, fitted per contender of a ladder, and what they say against each other.

The fit is Chinchilla's third approach (Hoffmann et al. 2022, §3.3) with compute as the one variable:
``L(C) = E + A·C^(−α)``, found by minimising the Huber loss (δ = 1e-3) between the log of the prediction, written
as a log-sum-exp ``LSE(e, a − α·log C)`` with ``E = exp(e)`` and ``A = exp(a)``, and the log of each measured loss,
with L-BFGS from every start of a grid, keeping the best. The Huber loss makes the fit robust to an outlying run;
the log space weighs a small loss's relative error like a large one's. Every seed of every rung is a point.
Compute is divided by the smallest rung's before fitting (A is converted back), so the starts need not know
its scale.

- *Forecast check*: fit on every rung but the largest, predict the largest rung's loss, and report the
  prediction minus the mean measured loss over its seeds (in nats). It needs four rungs (three to fit).
- *Compute multiplier* of contender X against the reference (the first contender): with ``C*`` the reference's
  largest rung's compute, the compute the reference's fit needs to reach X's fitted loss at ``C*``, divided by
  ``C*``: ``m = L_ref⁻¹(L_X(C*)) / C*``. ``m = 2`` means X at ``C*`` is as good as the reference with twice the
  compute; ``m < 1``, X is worse. It is infinite when X's loss at ``C*`` is at or below the reference's
  irreducible loss E (no compute takes the reference there).
- *Bootstrap interval*: each contender's seeds are resampled with replacement within each rung (so every
  rung keeps its number of points), both fits redone (from the full fit's optimum), and the multiplier's 2.5 and
  97.5 percentiles over `RESAMPLES` resamples taken, with a numpy Generator of a fixed seed: the same runs give
  the same interval. With one seed per rung there is nothing to resample and no interval.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from cleangpt_core.errors import ConfigError

HUBER_DELTA = 1e-3
MIN_RUNGS = 3  # a fit has three parameters
RESAMPLES = 300
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
# the starts of L-BFGS, in the normalised compute's units: E as a fraction of the smallest loss, A as a multiple
# of the loss above it at the smallest rung, α
_E_FRACTIONS = (0.05, 0.3, 0.6, 0.9)
_A_FACTORS = (0.3, 1.0, 3.0)
_ALPHAS = (0.05, 0.2, 0.5, 1.0)


class Point(NamedTuple):
    """One run of a ladder: its rung (0 the smallest), its training compute (FLOPs) and its final loss."""

    rung: int
    compute: float
    loss: float


@dataclass(frozen=True)
class PowerLaw:
    """``L(C) = E + A·C^(−α)``: `floor` is E (the irreducible loss), `scale` A; `objective` is the fit's summed
    Huber loss at its optimum."""

    floor: float
    scale: float
    alpha: float
    objective: float = 0.0

    def loss(self, compute: float | np.ndarray) -> float | np.ndarray:
        """The predicted loss at `compute` FLOPs (A·C^(−α) taken in logs: A may be huge and C^(−α) tiny)."""
        return self.floor + np.exp(math.log(self.scale) - self.alpha * np.log(compute))

    def compute_for(self, loss: float) -> float:
        """The compute at which the law reaches `loss`; infinite at or below E (and for a flat law)."""
        if loss <= self.floor or self.alpha <= 0:
            return math.inf
        return math.exp((math.log(self.scale) - math.log(loss - self.floor)) / self.alpha)


def _objective(theta: np.ndarray, x: np.ndarray, log_loss: np.ndarray) -> tuple[float, np.ndarray]:
    """The summed Huber loss of log L̂ − log L and its gradient, with log L̂ = LSE(e, a − α·x)."""
    e, a, alpha = theta
    power = a - alpha * x
    predicted = np.logaddexp(e, power)
    residual = predicted - log_loss
    small = np.abs(residual) <= HUBER_DELTA
    value = np.where(small, 0.5 * residual**2, HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA)).sum()
    slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA)  # d Huber / d residual
    weight_e, weight_a = np.exp(e - predicted), np.exp(power - predicted)
    gradient = np.array([(slope * weight_e).sum(), (slope * weight_a).sum(), -(slope * weight_a * x).sum()])
    return float(value), gradient


def _minimise(theta: np.ndarray, x: np.ndarray, log_loss: np.ndarray) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    found = minimize(_objective, theta, args=(x, log_loss), jac=True, method="L-BFGS-B")
    return found.x, float(found.fun)


def fit_power_law(compute: Sequence[float], loss: Sequence[float], *, start: PowerLaw | None = None) -> PowerLaw:
    """The best ``E + A·C^(−α)`` through the points, by Huber loss in log space from every start of the grid
    (or from `start` alone: a bootstrap's refit begins at the full fit)."""
    rungs = len(set(compute))
    if rungs < MIN_RUNGS:
        raise ConfigError(f"a power-law fit needs at least {MIN_RUNGS} rungs of different compute, got {rungs}")
    c = np.asarray(compute, dtype=float)
    log_loss = np.log(np.asarray(loss, dtype=float))
    reference = float(c.min())
    x = np.log(c / reference)
    if start is not None:
        shifted_scale = math.log(start.scale) - start.alpha * math.log(reference)  # in compute/reference units
        starts = [np.array([math.log(start.floor), shifted_scale, start.alpha])]
    else:
        lowest = float(np.exp(log_loss.min()))
        above = max(float(np.exp(log_loss[x == 0].mean())) - lowest, 1e-3)
        starts = [
            np.array([math.log(fraction * lowest), math.log(factor * (lowest * (1 - fraction) + above)), alpha])
            for fraction, factor, alpha in itertools.product(_E_FRACTIONS, _A_FACTORS, _ALPHAS)
        ]
    from threadpoolctl import threadpool_limits

    # three parameters: BLAS threads only contend (on a busy 2-core machine a fit took 7 s instead of 0.3 s)
    with threadpool_limits(1, user_api="blas"):
        best, best_value = min((_minimise(theta, x, log_loss) for theta in starts), key=lambda found: found[1])
    e, a, alpha = best
    # back from compute/reference to compute: A·(C/C0)^(−α) = (A·C0^α)·C^(−α)
    return PowerLaw(math.exp(e), math.exp(a + alpha * math.log(reference)), float(alpha), best_value)


def fit_points(points: Sequence[Point], *, start: PowerLaw | None = None) -> PowerLaw:
    """`fit_power_law` over a contender's runs."""
    return fit_power_law([p.compute for p in points], [p.loss for p in points], start=start)


def largest_rung(points: Sequence[Point]) -> int:
    return max(p.rung for p in points)


def forecast_check(points: Sequence[Point]) -> dict[str, float] | None:
    """Fit on every rung but the largest and predict the largest: ``predicted``, ``measured`` (the mean over its
    seeds), ``error`` (predicted − measured, nats) and the ``compute`` predicted at; None with under four rungs."""
    top = largest_rung(points)
    known = [p for p in points if p.rung != top]
    if len({p.rung for p in known}) < MIN_RUNGS:
        return None
    held_out = [p for p in points if p.rung == top]
    compute = float(held_out[0].compute)
    predicted = float(fit_points(known).loss(compute))
    measured = math.fsum(p.loss for p in held_out) / len(held_out)
    return {"compute": compute, "predicted": predicted, "measured": measured, "error": predicted - measured}


def compute_multiplier(reference: PowerLaw, other: PowerLaw, at: float) -> float:
    """The compute `reference` needs to reach `other`'s loss at `at` FLOPs, divided by `at` (see the module)."""
    return reference.compute_for(float(other.loss(at))) / at


def _most_seeds(points: Sequence[Point]) -> int:
    """The most runs any rung has."""
    return max(sum(p.rung == rung for p in points) for rung in {p.rung for p in points})


def _resample(points: Sequence[Point], generator: np.random.Generator) -> list[Point]:
    """The points with each rung's seeds drawn again with replacement (as many as it had)."""
    drawn: list[Point] = []
    for rung in sorted({p.rung for p in points}):
        seeds = [p for p in points if p.rung == rung]
        drawn += [seeds[i] for i in generator.integers(0, len(seeds), size=len(seeds))]
    return drawn


def bootstrap_multiplier(
    reference: Sequence[Point],
    other: Sequence[Point],
    at: float,
    *,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """The multiplier's bootstrap interval over seeds (`CONFIDENCE`, percentiles); None with one seed per rung."""
    if max(_most_seeds(reference), _most_seeds(other)) < 2:
        return None
    reference_fit, other_fit = fit_points(reference), fit_points(other)
    generator = np.random.default_rng(seed)
    multipliers = np.array(
        [
            compute_multiplier(
                fit_points(_resample(reference, generator), start=reference_fit),
                fit_points(_resample(other, generator), start=other_fit),
                at,
            )
            for _ in range(resamples)
        ]
    )
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(multipliers, [tail, 1 - tail], method="nearest")  # inf stays inf: no interpolation
    return float(low), float(high)
