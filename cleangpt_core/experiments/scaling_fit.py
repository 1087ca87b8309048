"""Power laws of loss against compute, fitted per contender of a ladder, and what they say against each other.

Every statistic here was chosen and is checked by the calibration harness (`cleangpt_core.experiments.calibration`,
`benchmarks/results/calibration.md`), which feeds simulated ladders of known truth through these functions.

- *Seed noise*: each contender's seed variance, modelled across its rungs as log-linear in log compute
  (``σ²·exp(b·z)``, z the rung's place from −½ at the smallest to ½ at the largest; noise often grows at small
  rungs), by maximum likelihood over every run's squared deviation from its rung's mean. With fewer than three
  rungs of two seeds or more, b = 0: the variance pooled across rungs. Its degrees of freedom are the runs less
  the rungs (less one for b). One seed a rung measures none, and then no interval, forecast tolerance or
  multiplier is given.
- *The fit*: ``L(C) = E + A·C^(−α)`` through every seed's final loss (each run a point), by least squares on the
  losses in nats weighted by 1/σ² of each run's rung, with E ≥ 0 and A ≥ 0. With α fixed the law is linear in
  (E, A), so α is profiled: the closed-form least squares of (E, A) at each α of a grid (`ALPHAS`, per unit of
  log compute), then a golden-section search between the best grid point's neighbours. No local optimum can
  catch it, and hundreds of refits take milliseconds. Least squares in nats is the likelihood of Gaussian seed
  noise; the Huber loss in log space (δ = 1e-3) the ladder used before sat below the seed noise and fitted in
  effect L1 (the harness's convention table compares the two).
- *Forecast check*: fit on every rung but the largest, predict the largest, and report predicted − measured
  (the mean over its seeds, nats), against a tolerance from the seed noise: the 95th percentile of |error| / σ
  over `RESAMPLES` ladders drawn around the full fit with the measured noise (a studentised parametric
  bootstrap), times the measured σ at the largest rung. It needs four rungs (three to fit).
- *Compute multiplier* of contender X against the reference: with ``C*`` the reference's largest rung's compute,
  the compute the reference's fit needs to reach X's fitted loss at ``C*``, divided by ``C*``:
  ``m = L_ref⁻¹(L_X(C*)) / C*``. ``m = 2``: X at ``C*`` is as good as the reference with twice the compute.
- *Identified*: the multiplier is given only where the data identify it, else withheld with one reason
  (`RULES`, checked in this order): four rungs or more per contender (three distinct computes fit a law of
  three parameters exactly, and nothing tests it), two seeds at some rungs, both forecast checks within their
  tolerance, E of neither contender at its bound 0 in its fit or in more than `FLOOR_SHARE` of the bootstrap's
  refits (the rungs then cannot tell the floor from none, and where the law extrapolates, the bound decides),
  X's loss at ``C*`` above the reference's E, and the compute the multiplier implies, ``m·C*``, within
  `RANGE_FACTOR` of the reference's measured range (an extrapolation any further rests on the law alone).
- *Interval*: a parametric bootstrap-t. Each contender's runs are drawn again around its fit with its seed
  noise (`RESAMPLES` times, every run, a numpy Generator of fixed seed: the same runs give the same interval),
  both laws refitted (noise model, weights and all), and the multiplier recomputed; ``t = (log m* − log m̂) /
  s*``, with s* the draw's own seed sd at the largest rungs (both contenders' in quadrature), carries the
  uncertainty of the noise itself (two seeds a rung measure it with few degrees of freedom), and the interval
  is ``m̂·exp(−t_q·s)`` at t's 97.5 and 2.5 percentiles. `benchmarks/results/calibration.md` compares it with
  the percentile interval of the same draws and with the ladder's method before (seeds resampled within rungs).
- *Gaps at matched compute*: what the rungs support without the law. At each rung, the compute of the
  reference's rung (clipped to the range both contenders measured), each contender's loss there interpolated
  by the quadratic in log compute through its three nearest rungs' means (never extrapolated), and X's minus
  the reference's, with Welch's interval from the seed noise models (`cleangpt_core.experiments.verdicts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.verdicts import Difference, t_difference

MIN_RUNGS = 3  # a fit has three parameters
FORECAST_RUNGS = 4  # three to fit, one to predict; with three rungs the fit is exactly determined
RESAMPLES = 400
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
FORECAST_CONFIDENCE = 0.95  # the share of forecast errors a correct law stays within, per contender
RANGE_FACTOR = 10.0  # how far beyond (or below) the reference's measured compute a multiplier may reach
FLOOR_SHARE = 0.2  # E is not identified where more than this share of the bootstrap's refits put it at 0
# α per unit of log compute: a law whose loss above E halves over 10^4 to 10^-4 of compute, then refined
ALPHAS = np.geomspace(0.003, 3.0, 100)
# the seed variance's trend: log of the variance at the largest rung over that at the smallest, up to 64 (sd 8×)
NOISE_TRENDS = np.linspace(-math.log(64), math.log(64), 41)
GOLDEN_STEPS = 24  # the bracket (two grid steps, 15 % of α) shrinks to 1e-6 of α
FIT_METHOD = (
    "least squares on the losses (nats), each run weighted by 1/σ² of its rung's seed noise, with E ≥ 0 and "
    "A ≥ 0, α profiled over a grid of 100 values (0.003 to 3) and refined by golden-section search"
)
INTERVAL_METHOD = (
    f"parametric bootstrap-t ({RESAMPLES} draws of every run around both fits with each contender's seed "
    "noise, both laws refitted; fixed generator seed)"
)
GAP_METHOD = (
    "each contender's loss at the reference's rung compute (clipped to the range both measured), interpolated "
    "by the quadratic in log compute through its three nearest rungs' means, never extrapolated; Welch's "
    "interval from each contender's seed noise"
)


class Point(NamedTuple):
    """One run of a ladder: its rung (0 the smallest), its training compute (FLOPs) and its final loss."""

    rung: int
    compute: float
    loss: float


@dataclass(frozen=True)
class PowerLaw:
    """``L(C) = E + A·C^(−α)``: `floor` is E (the irreducible loss), `scale` A; `objective` is the fit's sum of
    squared residuals, each over its rung's seed variance."""

    floor: float
    scale: float
    alpha: float
    objective: float = 0.0

    def loss(self, compute: float | np.ndarray) -> float | np.ndarray:
        """The predicted loss at `compute` FLOPs (A·C^(−α) taken in logs: A may be huge and C^(−α) tiny)."""
        if self.scale <= 0:
            return self.floor + 0 * np.asarray(compute, dtype=float)
        return self.floor + np.exp(math.log(self.scale) - self.alpha * np.log(compute))

    def compute_for(self, loss: float) -> float:
        """The compute at which the law reaches `loss`; infinite at or below E (and for a flat law)."""
        if loss <= self.floor or self.alpha <= 0 or self.scale <= 0:
            return math.inf
        return math.exp((math.log(self.scale) - math.log(loss - self.floor)) / self.alpha)


# -- the fit: α profiled over a grid, (E, B) in closed form, every row of Y at once --------------------------------


class Fits(NamedTuple):
    """Laws ``E + B·exp(−α·x)`` in the log compute x of one origin, one per row of the losses fitted."""

    floor: np.ndarray
    scale: np.ndarray  # B: the law's loss above E at x = 0
    alpha: np.ndarray
    sse: np.ndarray

    def loss(self, x: float | np.ndarray) -> np.ndarray:
        return self.floor + self.scale * np.exp(-self.alpha * x)

    def x_for(self, loss: np.ndarray) -> np.ndarray:
        """The log compute at which each law reaches `loss` (inf at or below its E, or for a flat law)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            found = np.log(self.scale / (loss - self.floor)) / self.alpha
        return np.where((loss > self.floor) & (self.scale > 0) & (self.alpha > 0), found, np.inf)


def _least_squares(
    sum_w: np.ndarray,
    sum_f: np.ndarray,
    sum_ff: np.ndarray,
    sum_y: np.ndarray,
    sum_yy: np.ndarray,
    sum_fy: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weighted least-squares (E, B) of ``y ≈ E + B·f`` with E ≥ 0, B ≥ 0, from the weighted sums, and its
    weighted squared error.

    The objective is convex, so where the unconstrained optimum breaks a bound the constrained one lies on a
    bound: E = 0 (B = Σfy/Σff) or B = 0 (a flat law at the mean), whichever fits better."""
    spread_f = sum_ff - sum_f * sum_f / sum_w
    with np.errstate(divide="ignore", invalid="ignore"):
        covariance = sum_fy - sum_f * sum_y / sum_w
        scale = covariance / spread_f
        floor = (sum_y - scale * sum_f) / sum_w
        sse_free = sum_yy - sum_y * sum_y / sum_w - covariance * covariance / spread_f
        scale_at_zero = sum_fy / sum_ff
        sse_at_zero = sum_yy - sum_fy * sum_fy / sum_ff
    sse_flat = sum_yy - sum_y * sum_y / sum_w
    free = (scale > 0) & (floor >= 0) & (spread_f > 0)
    at_zero = ~free & (scale_at_zero > 0) & (sse_at_zero < sse_flat)
    floor = np.where(free, floor, np.where(at_zero, 0.0, sum_y / sum_w))
    scale = np.where(free, scale, np.where(at_zero, scale_at_zero, 0.0))
    sse = np.where(free, sse_free, np.where(at_zero, sse_at_zero, sse_flat))
    return floor, scale, np.maximum(sse, 0.0)


def fit_rows(x: np.ndarray, losses: np.ndarray, weights: np.ndarray | None = None) -> Fits:
    """The best law through (x, each row of `losses`) by least squares weighted by `weights` (per point, or per
    row and point; none: equal): every α of `ALPHAS` in closed form, then a golden-section search between the
    best one's neighbours (all rows at once)."""
    y = np.atleast_2d(np.asarray(losses, dtype=float))
    w = np.broadcast_to(np.ones(x.size) if weights is None else weights, y.shape)
    wy = w * y
    sum_w, sum_y, sum_yy = w.sum(1), wy.sum(1), (wy * y).sum(1)
    basis = np.exp(-np.outer(ALPHAS, x))
    _, _, grid_sse = _least_squares(
        sum_w[:, None], w @ basis.T, w @ (basis * basis).T, sum_y[:, None], sum_yy[:, None], wy @ basis.T
    )
    best = grid_sse.argmin(1)
    low, high = ALPHAS[np.maximum(best - 1, 0)], ALPHAS[np.minimum(best + 1, ALPHAS.size - 1)]

    def at(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.exp(-alpha[:, None] * x[None])
        wf = w * f
        return _least_squares(sum_w, wf.sum(1), (wf * f).sum(1), sum_y, sum_yy, (wf * y).sum(1))

    ratio = (math.sqrt(5) - 1) / 2
    inner_low, inner_high = high - ratio * (high - low), low + ratio * (high - low)
    sse_low, sse_high = at(inner_low)[2], at(inner_high)[2]
    for _ in range(GOLDEN_STEPS):  # keep the better inner point, probe one new point per step
        left = sse_low < sse_high
        high, low = np.where(left, inner_high, high), np.where(left, low, inner_low)
        probe = np.where(left, high - ratio * (high - low), low + ratio * (high - low))
        sse_probe = at(probe)[2]
        inner_low, inner_high = np.where(left, probe, inner_high), np.where(left, inner_low, probe)
        sse_low, sse_high = np.where(left, sse_probe, sse_high), np.where(left, sse_low, sse_probe)
    alpha = (low + high) / 2
    floor, scale, sse = at(alpha)
    return Fits(floor, scale, alpha, sse)


def fit_power_law(compute: Sequence[float], loss: Sequence[float]) -> PowerLaw:
    """The least-squares ``E + A·C^(−α)`` through the points (runs of equal compute are seeds of one rung)."""
    rungs = {c: index for index, c in enumerate(sorted(set(compute)))}
    return fit_points([Point(rungs[c], float(c), float(v)) for c, v in zip(compute, loss, strict=True)])


def fit_points(points: Sequence[Point]) -> PowerLaw:
    """The weighted least-squares law through a contender's runs (see the module)."""
    distinct = len({p.compute for p in points})
    if distinct < MIN_RUNGS:
        raise ConfigError(f"a power-law fit needs at least {MIN_RUNGS} rungs of different compute, got {distinct}")
    origin = _origin(points)
    runs = Runs.of(points, origin)
    floor, scale, alpha, sse = (float(v[0]) for v in runs.fit())
    # back from x = log C − origin: B·exp(−α·x) = (B·exp(α·origin))·C^(−α)
    return PowerLaw(floor, math.exp(math.log(scale) + alpha * origin) if scale > 0 else 0.0, alpha, sse)


def largest_rung(points: Sequence[Point]) -> int:
    return max(p.rung for p in points)


# -- a contender's runs as arrays, and their seed noise -------------------------------------------------------


@dataclass(frozen=True)
class Runs:
    """One contender's runs: log compute `x` (from a shared origin), losses `y`, and each run's rung index
    (`group`, 0-based over its distinct computes, smallest first)."""

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    computes: np.ndarray  # the distinct log computes, smallest first

    @classmethod
    def of(cls, points: Sequence[Point], origin: float) -> Runs:
        x = np.log(np.array([p.compute for p in points], dtype=float)) - origin
        computes, group = np.unique(x, return_inverse=True)
        return cls(x, np.array([p.loss for p in points], dtype=float), group, computes)

    def subset(self, keep: np.ndarray) -> Runs:
        """The runs where `keep` holds (whole rungs)."""
        computes, group = np.unique(self.x[keep], return_inverse=True)
        return Runs(self.x[keep], self.y[keep], group, computes)

    @property
    def rungs(self) -> int:
        return self.computes.size

    def counts(self) -> np.ndarray:
        return np.bincount(self.group, minlength=self.rungs)

    @property
    def trend(self) -> bool:
        """Whether the noise model has a trend: three rungs or more with two seeds or more."""
        return int((self.counts() > 1).sum()) >= MIN_RUNGS

    @property
    def df(self) -> int:
        """The seed noise's degrees of freedom: runs less rungs, less one for a trend."""
        return self.y.size - self.rungs - int(self.trend)

    def rung_means(self) -> np.ndarray:
        return np.bincount(self.group, weights=self.y, minlength=self.rungs) / self.counts()

    def noise(self, y: np.ndarray | None = None) -> np.ndarray:
        """The seed sd at each rung (rows × rungs) of each row of `y` (the runs' own losses by default): the
        variance log-linear in log compute, ``σ²·exp(b·z)`` with z the rung's place from −½ (smallest) to ½
        (largest), by maximum likelihood over the rungs' squared deviations from their means (b over a grid
        of `NOISE_TRENDS`; b = 0, the pooled variance, without a `trend`); nan with no degrees of freedom."""
        rows = np.atleast_2d(self.y if y is None else y)
        counts = self.counts()
        sums = np.zeros((rows.shape[0], self.rungs))
        np.add.at(sums.T, self.group, rows.T)
        squares = np.zeros((rows.shape[0], self.rungs))
        np.add.at(squares.T, self.group, ((rows - (sums / counts)[:, self.group]) ** 2).T)
        freedom = float((counts - 1).sum())
        if freedom <= 0:
            return np.full((rows.shape[0], self.rungs), np.nan)
        span = self.computes[-1] - self.computes[0]
        place = (self.computes - (self.computes[0] + self.computes[-1]) / 2) / span
        trends = NOISE_TRENDS if self.trend else np.zeros(1)
        variance = squares @ np.exp(-np.outer(trends, place)).T / freedom  # at place 0, per row and trend
        with np.errstate(divide="ignore"):
            likelihood = -freedom * np.log(variance) - trends * float(((counts - 1) * place).sum())
        best = likelihood.argmax(1)
        chosen = variance[np.arange(rows.shape[0]), best]
        return np.sqrt(chosen[:, None] * np.exp(trends[best][:, None] * place[None]))

    def freedom(self) -> np.ndarray:
        """The degrees of freedom of each rung's seed variance under the noise model: the pooled ν = Σ(n_r − 1),
        less where the trend's slope is extrapolated (the variance of log σ_r² is 2/ν + (z_r − z̄)²·2/S_zz,
        S_zz = Σ ν_r (z_r − z̄)², and a variance estimate with d degrees of freedom has 2/d)."""
        counts = self.counts()
        freedom = counts - 1.0
        total = float(freedom.sum())
        if not self.trend:
            return np.full(self.rungs, total)
        place = (self.computes - (self.computes[0] + self.computes[-1]) / 2) / (self.computes[-1] - self.computes[0])
        centre = float((freedom * place).sum()) / total
        spread = float((freedom * (place - centre) ** 2).sum())
        return 1.0 / (1.0 / total + (place - centre) ** 2 / spread)

    def weights(self, noise: np.ndarray) -> np.ndarray:
        """Each run's least-squares weight, 1/σ² of its rung (equal in a row whose noise is not measured or is
        none at some rung: identical seeds)."""
        unweighted = ~np.all(np.isfinite(noise) & (noise > 0), axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(unweighted, 1.0, 1.0 / noise[:, self.group] ** 2)

    def fit(self, y: np.ndarray | None = None) -> Fits:
        """The laws of each row of `y` (the runs' own by default), weighted by each row's own noise model."""
        rows = self.y if y is None else y
        return fit_rows(self.x, rows, self.weights(self.noise(rows)))

    def draws(self, fit: Fits, noise: np.ndarray, resamples: int, generator: np.random.Generator) -> np.ndarray:
        """`resamples` sets of this contender's runs drawn around `fit` with the seed sd `noise` of each rung."""
        return fit.loss(self.x)[None] + noise[self.group][None] * generator.normal(size=(resamples, self.x.size))


def _origin(*groups: Sequence[Point]) -> float:
    return float(np.log(min(p.compute for points in groups for p in points)))


# -- the forecast check -------------------------------------------------------------------------------------------


def forecast_check(
    points: Sequence[Point], *, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, float | bool | None] | None:
    """Fit on every rung but the largest and predict the largest: ``predicted``, ``measured`` (the mean over its
    seeds), ``error`` (predicted − measured, nats), the ``compute`` predicted at, the ``tolerance`` the seed
    spread allows and whether the error is ``within`` it (both None with one seed a rung); None with under four
    rungs."""
    runs = Runs.of(points, _origin(points))
    if runs.rungs < FORECAST_RUNGS:
        return None
    known = runs.subset(runs.x < runs.computes[-1])
    predicted = float(known.fit().loss(runs.computes[-1])[0])
    measured = float(runs.rung_means()[-1])
    check: dict[str, float | bool | None] = {
        "compute": float(max(p.compute for p in points)),
        "predicted": predicted,
        "measured": measured,
        "error": predicted - measured,
        "tolerance": None,
        "within": None,
    }
    if runs.df > 0:
        tolerance = _forecast_tolerance(runs, known, resamples, seed)
        check["tolerance"] = tolerance
        check["within"] = abs(predicted - measured) <= tolerance
    return check


def _forecast_tolerance(runs: Runs, known: Runs, resamples: int, seed: int) -> float:
    """The studentised bootstrap's bound on |forecast error| (see the module)."""
    noise = runs.noise()[0]
    if noise[-1] == 0:
        return 0.0
    generator = np.random.default_rng(seed)
    drawn = runs.draws(runs.fit(), noise, resamples, generator)
    top = runs.x == runs.computes[-1]
    errors = known.fit(drawn[:, ~top]).loss(runs.computes[-1]) - drawn[:, top].mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        studentised = np.abs(errors) / runs.noise(drawn)[:, -1]
    return float(np.quantile(studentised, FORECAST_CONFIDENCE)) * float(noise[-1])


# -- the compute multiplier ---------------------------------------------------------------------------------------


def compute_multiplier(reference: PowerLaw, other: PowerLaw, at: float) -> float:
    """The compute `reference` needs to reach `other`'s loss at `at` FLOPs, divided by `at` (see the module)."""
    return reference.compute_for(float(other.loss(at))) / at


class Withheld(NamedTuple):
    """Why a multiplier is not given: the `rule` it fails (one of `RULES`) and the report's one-line `reason`."""

    rule: str
    reason: str


# the identification rules, in the order they are checked
RULES = ("exact", "one seed", "forecast", "floor", "unreachable", "range")


@dataclass(frozen=True)
class Multiplier:
    """The compute multiplier of a contender against the reference at `at` FLOPs: its `value` and interval
    (`low`, `high`; inf where the interval is open above), or why it is `withheld` (then all three None)."""

    value: float | None
    low: float | None
    high: float | None
    withheld: Withheld | None


def identification(
    reference: Sequence[Point],
    other: Sequence[Point],
    at: float,
    *,
    names: tuple[str, str] = ("the reference", "the contender"),
    forecasts: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Withheld | None:
    """Why the data do not identify the multiplier of `other` against `reference` at `at` FLOPs (the module's
    rules, in that order), or None where they do. `names` name the two in the reason; `forecasts` are their
    `forecast_check`s where the caller has them already (made with the same `resamples` and `seed`)."""
    return multiplier_estimate(
        reference, other, at, names=names, forecasts=forecasts, resamples=resamples, seed=seed
    ).withheld


def multiplier_estimate(
    reference: Sequence[Point],
    other: Sequence[Point],
    at: float,
    *,
    names: tuple[str, str] = ("the reference", "the contender"),
    forecasts: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Multiplier:
    """The multiplier of `other` against `reference` at `at` FLOPs with its bootstrap-t interval, or why it is
    withheld (the module's rules, in that order; `forecasts` as in `identification`)."""
    origin = _origin(reference, other)
    sides = list(zip(names, (Runs.of(reference, origin), Runs.of(other, origin)), strict=True))
    for name, runs in sides:
        if runs.rungs < FORECAST_RUNGS:
            return _withheld(
                "exact",
                f"{name} has {runs.rungs} rungs of distinct compute for a law of 3 parameters: the fit passes "
                "through every rung's mean whatever the law, and nothing tests it",
            )
    for name, runs in sides:
        if runs.df <= 0:
            return _withheld(
                "one seed", f"{name} has one seed a rung: no seed spread to judge its fit or an interval by"
            )
    if forecasts is None:
        forecasts = (
            forecast_check(reference, resamples=resamples, seed=seed),
            forecast_check(other, resamples=resamples, seed=seed),
        )
    for (name, _), check in zip(sides, forecasts, strict=True):
        assert check is not None and check["tolerance"] is not None
        if not check["within"]:
            return _withheld(
                "forecast",
                f"{name}'s law missed its largest rung by {check['error']:+.3f} nats (fitted on the smaller "
                f"rungs), outside the ±{check['tolerance']:.3f} its seed spread allows: the law does not hold "
                "up to its largest rung",
            )
    drawn = _draw([runs for _, runs in sides], math.log(at) - origin, resamples, seed)
    for (name, _), fit, share in zip(sides, drawn.fits, drawn.floor_shares, strict=True):
        if fit.floor[0] <= 0 or share > FLOOR_SHARE:
            return _withheld(
                "floor",
                f"{name}'s E is at its bound 0 in {'its fit' if fit.floor[0] <= 0 else f'{share:.0%} of the refits'}: "
                "the rungs do not tell its floor from none, and where the law extrapolates the bound decides",
            )
    value = float(math.exp(drawn.log_multiplier))
    if math.isinf(value):
        return _withheld(
            "unreachable",
            f"{names[1]}'s fitted loss at C* is at or below {names[0]}'s fitted E: no compute reaches it by that fit",
        )
    reach = value * at
    smallest, largest = min(p.compute for p in reference), max(p.compute for p in reference)
    if not smallest / RANGE_FACTOR <= reach <= largest * RANGE_FACTOR:
        return _withheld(
            "range",
            f"the multiplier implies {reach:.3g} FLOPs for {names[0]}, more than {RANGE_FACTOR:g}× outside its "
            f"measured {smallest:.3g} to {largest:.3g}: too far to read off its fit",
        )
    low, high = drawn.interval()
    return Multiplier(value, low, high, None)


def _withheld(rule: str, reason: str) -> Multiplier:
    return Multiplier(None, None, None, Withheld(rule, reason))


@dataclass(frozen=True)
class _Drawn:
    """Both contenders' fits, the multiplier (log) and its parametric bootstrap: the log multipliers of the
    refits, their spreads and the measured one (both contenders' in quadrature), and each contender's share of
    refits with E at its bound."""

    fits: tuple[Fits, Fits]
    log_multiplier: float
    drawn: np.ndarray
    drawn_scale: np.ndarray
    scale: float
    floor_shares: tuple[float, float]

    def interval(self) -> tuple[float, float]:
        """The bootstrap-t interval: ``m̂·exp(−t_q·s)`` at the 97.5 and 2.5 percentiles of t (see the module)."""
        value = math.exp(self.log_multiplier)
        if self.scale == 0:
            return value, value
        with np.errstate(invalid="ignore"):
            t = np.where(np.isinf(self.drawn), np.inf, (self.drawn - self.log_multiplier) / self.drawn_scale)
        tail = (1 - CONFIDENCE) / 2
        t_low, t_high = np.quantile(t, [tail, 1 - tail], method="nearest")  # inf stays inf: no interpolation
        low = value * math.exp(-t_high * self.scale) if math.isfinite(t_high) else 0.0
        high = value * math.exp(-t_low * self.scale) if math.isfinite(t_low) else math.inf
        return float(low), float(high)


def _draw(sides: Sequence[Runs], x_at: float, resamples: int, seed: int) -> _Drawn:
    """Fit both contenders, then draw every run again `resamples` times around its contender's fit with its seed
    spread and refit (a numpy Generator seeded by `seed`)."""
    generator = np.random.default_rng(seed)
    fits, refits, spreads, drawn_spreads = [], [], [], []
    for runs in sides:
        fit, noise = runs.fit(), runs.noise()[0]
        draws = runs.draws(fit, noise, resamples, generator)
        fits.append(fit)
        refits.append(runs.fit(draws))
        spreads.append(float(noise[-1]))  # the seed sd at the largest rung, where the multiplier is read
        drawn_spreads.append(runs.noise(draws)[:, -1])
    log_multiplier = float(fits[0].x_for(fits[1].loss(x_at))[0] - x_at)
    return _Drawn(
        fits=(fits[0], fits[1]),
        log_multiplier=log_multiplier,
        drawn=refits[0].x_for(refits[1].loss(x_at)) - x_at,
        drawn_scale=np.hypot(*drawn_spreads),
        scale=math.hypot(*spreads),
        floor_shares=(float((refits[0].floor <= 0).mean()), float((refits[1].floor <= 0).mean())),
    )


def bootstrap_multiplier(
    reference: Sequence[Point],
    other: Sequence[Point],
    at: float,
    *,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """The multiplier's `CONFIDENCE` interval (`multiplier_estimate`'s), or None where it is withheld."""
    found = multiplier_estimate(reference, other, at, resamples=resamples, seed=seed)
    return None if found.withheld is not None else (found.low, found.high)


# -- gaps at matched compute, inside the measured range --------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """X's loss minus the reference's at `compute` FLOPs (each interpolated between its nearest rungs), with
    Welch's interval from the seed noise models (no interval with one seed a rung)."""

    rung: int
    compute: float
    difference: Difference


def _interpolation(runs: Runs, x: float) -> tuple[np.ndarray, np.ndarray]:
    """The rungs and weights that interpolate the loss at log compute `x` inside the runs' range: the quadratic
    in x through the three nearest rungs' means (Lagrange; linear with two rungs). A loss curve bends in log
    compute: a straight line between rungs misses the bend by up to α²·(L − E)·Δx²/8, about 0.03 nats for the
    harness's law at rungs 15× apart, beside seed noise of 0.005; the quadratic's error is of the next order."""
    points = min(3, runs.rungs)
    nearest = np.sort(np.argsort(np.abs(runs.computes - x), kind="stable")[:points])
    at = runs.computes[nearest]
    weights = np.array(
        [math.prod((x - at[k]) / (at[j] - at[k]) for k in range(points) if k != j) for j in range(points)]
    )
    return nearest, weights


def matched_gaps(reference: Sequence[Point], other: Sequence[Point]) -> list[Gap]:
    """At each of the reference's rungs, the gap at its compute clipped to the range both measured (see the
    module); [] where the two ranges do not overlap."""
    origin = _origin(reference, other)
    runs_ref, runs_other = Runs.of(reference, origin), Runs.of(other, origin)
    low = max(runs_ref.computes[0], runs_other.computes[0])
    high = min(runs_ref.computes[-1], runs_other.computes[-1])
    if low > high or runs_ref.rungs < 2 or runs_other.rungs < 2:
        return []
    gaps = []
    for rung, x in enumerate(runs_ref.computes):
        matched = float(np.clip(x, low, high))
        (value_other, part_other), (value_ref, part_ref) = (_at(runs, matched) for runs in (runs_other, runs_ref))
        parts = [part_other, part_ref] if part_other is not None and part_ref is not None else []
        gaps.append(Gap(rung, math.exp(matched + origin), t_difference(value_other - value_ref, parts)))
    return gaps


def _at(runs: Runs, x: float) -> tuple[float, tuple[float, float] | None]:
    """The interpolated loss at `x` and its (variance, degrees of freedom) from the seed noise model, the rungs'
    degrees of freedom combined by Welch-Satterthwaite (None with no noise measured)."""
    rungs, weights = _interpolation(runs, x)
    value = float(weights @ runs.rung_means()[rungs])
    if runs.df <= 0:
        return value, None
    parts = weights**2 * runs.noise()[0][rungs] ** 2 / runs.counts()[rungs]
    freedom = float(parts.sum() ** 2 / (parts**2 / runs.freedom()[rungs]).sum()) if parts.sum() > 0 else 1.0
    return value, (float(parts.sum()), freedom)
