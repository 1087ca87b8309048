"""Verdicts on differences of mean validation loss over seeds: the interval of each difference, a family's correction,
and whether a verdict rests on one seed. `ablation` (each lever against the base), `report` (each pair of a
comparison's contenders) and `ladder_report` (the contenders' gaps at each rung) read their verdicts here.

- *Welch's t-interval* (95 %, unequal variances) of a difference of means: the variance of each side's part and
  its degrees of freedom, combined by Welch-Satterthwaite. Two samples of losses are the plain case; a ladder's gap
  at a compute between rungs is a weighted sum of rung means with modelled seed variances, the same formula.
- *Paired t-interval*: where both sides trained on the same seeds and keep the model's shapes, seed *s* gives both
  the same initial weights and the same data order, so the per-seed differences cancel what the seed does to both.
  It is a one-sample t-interval of those differences, valid whatever their correlation, and narrower than Welch's
  where the correlation outweighs the lost degrees of freedom. The calibration harness
  (`cleangpt_core.experiments.calibration`) measured where that is: `PAIRED_MIN_SEEDS`.
- *Family*: the differences a report gives side by side (an ablation's levers, a comparison's pairs, a ladder's
  rungs) are one family. A verdict other than *within noise* needs Holm's step-down correction of the family's
  two-sided p-values (Holm 1979) at 5 %: the chance that any verdict of the family is wrong about the sign of a
  difference that is zero stays at or below 5 %, whatever the number of levers.
- *Outlying seeds, left out*: a seed whose run is an outlier among the others' (a studentised deleted residual
  beyond the 5 % level over the seeds; it takes 4 seeds to tell) is named, with the difference and the
  family's verdict without that seed's runs; a verdict that then changes rests on that seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
FAMILY_LEVEL = 0.05  # Holm's family-wise error rate
CORRECTION = "Holm's step-down correction (family-wise 5 %)"
# paired intervals from this many shared seeds on: with 2 seeds a paired interval has 1 degree of freedom
# (t = 12.7) and gains only at a seed correlation above 0.89; from 3 seeds the harness's power columns
# (calibration.md, "Ablations") show a gain where the correlation is 0.6 or more, about what the record's
# levers that keep the shapes show (0.25 to 0.96 over 3 seeds), and a loss where it is 0
PAIRED_MIN_SEEDS = 3
WELCH = "Welch's t-interval (95 %, unequal variances)"
PAIRED = "paired t-interval over shared seeds (95 %)"
PAIRING = (
    f"a {PAIRED} where both models have the same shapes and there are {PAIRED_MIN_SEEDS} seeds or more, else {WELCH}"
)
HELPS, HURTS, WITHIN_NOISE = "helps", "hurts", "within noise"
OUTLIER_MIN_SEEDS = 4  # an outlier among n seeds is judged by the n − 1 others' spread: 3 of them at least


def losses_by_seed(results: Sequence[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Each label's final validation loss by seed (runs without one left out)."""
    losses: dict[str, dict[int, float]] = {}
    for result in results:
        if result.get("val_loss") is not None:
            losses.setdefault(result["label"], {})[result.get("seed")] = result["val_loss"]
    return losses


def shapes(results: Sequence[dict[str, Any]]) -> dict[str, tuple[Any, Any, Any]]:
    """What the results tell of each label's model shapes: its model type and both parameter counts."""
    return {r["label"]: (r.get("model_type"), r.get("parameters"), r.get("all_parameters")) for r in results}


def same_shapes(shape: tuple[Any, Any, Any], other: tuple[Any, Any, Any]) -> bool:
    return shape == other and None not in shape


@dataclass(frozen=True)
class Difference:
    """A difference of means with its `CONFIDENCE` interval and two-sided p-value of no difference; `low`, `high`
    and `p` are None where there is no spread to measure (one run a side)."""

    delta: float
    low: float | None
    high: float | None
    p: float | None
    method: str


def t_difference(delta: float, parts: Sequence[tuple[float, float]], method: str = WELCH) -> Difference:
    """The t-interval of `delta` whose variance is the sum of `parts`, each (variance, degrees of freedom):
    Welch-Satterthwaite's degrees of freedom. A part with no degrees of freedom leaves no interval."""
    from scipy.special import stdtr, stdtrit  # the t distribution's ufuncs: microseconds, not scipy.stats' ~100 µs

    if not parts or any(df <= 0 for _, df in parts):
        return Difference(delta, None, None, None, method)
    variance = math.fsum(v for v, _ in parts)
    if variance <= 0:  # identical runs on each side: the difference is known exactly
        return Difference(delta, delta, delta, 0.0 if delta != 0 else 1.0, method)
    df = variance**2 / math.fsum(v**2 / d for v, d in parts if v > 0)
    se = math.sqrt(variance)
    half = float(stdtrit(df, 0.5 + CONFIDENCE / 2)) * se
    p = float(2 * stdtr(df, -abs(delta) / se))
    return Difference(delta, delta - half, delta + half, p, method)


def _mean_and_part(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    variance = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, (variance / len(values), len(values) - 1)


def welch(a: Sequence[float], b: Sequence[float]) -> Difference:
    """mean(a) − mean(b) with Welch's t-interval (needs 2+ values a side for an interval)."""
    mean_a, part_a = _mean_and_part(a)
    mean_b, part_b = _mean_and_part(b)
    parts = [part for part in (part_a, part_b) if part is not None]
    return t_difference(mean_a - mean_b, parts if len(parts) == 2 else [], WELCH)


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Difference:
    """mean(a − b) over the seeds both have, with the one-sample t-interval of the differences."""
    differences = [a[seed] - b[seed] for seed in a if seed in b]
    mean, part = _mean_and_part(differences)
    return t_difference(mean, [part] if part is not None else [], PAIRED)


def pairable(a: Mapping[int, float], b: Mapping[int, float], same_shapes: bool) -> bool:
    """Whether to pair: the same seeds on both sides (at least `PAIRED_MIN_SEEDS`) and models of the same shapes."""
    return same_shapes and set(a) == set(b) and len(a) >= PAIRED_MIN_SEEDS


def difference(a: Mapping[int, float], b: Mapping[int, float], same_shapes: bool) -> Difference:
    """mean(a) − mean(b) over seeds (seed → final loss), paired where `pairable`, else Welch's."""
    if pairable(a, b, same_shapes):
        return paired(a, b)
    return welch(list(a.values()), list(b.values()))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's adjusted p-values (None stays None and does not count in the family)."""
    known = sorted((p, index) for index, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        adjusted[index] = running
    return adjusted


def verdict(found: Difference, adjusted_p: float | None) -> str:
    """*hurts* (the first side's loss is higher) or *helps* where the family-adjusted p is at most 5 %."""
    if adjusted_p is None or adjusted_p > FAMILY_LEVEL or found.delta == 0:
        return WITHIN_NOISE
    return HURTS if found.delta > 0 else HELPS


@dataclass(frozen=True)
class Contrast:
    """One member of a family: the first side's and the second side's final losses by seed, and whether the two
    models have the same shapes (so that a shared seed draws the same initial weights)."""

    first: Mapping[int, float]
    second: Mapping[int, float]
    same_shapes: bool = False

    def without(self, seed: int) -> Contrast:
        return Contrast(
            {s: v for s, v in self.first.items() if s != seed},
            {s: v for s, v in self.second.items() if s != seed},
            self.same_shapes,
        )


@dataclass(frozen=True)
class Judged:
    """A contrast's difference (first − second), its Holm-adjusted p and verdict; the seeds that are outliers in it
    (`outlying_seeds`; None with fewer than `OUTLIER_MIN_SEEDS` a side: nothing to tell an outlier by), the
    difference and verdict without each (leaving that seed out of every contender and judging the family
    again), and the outliers the verdict rests on (without them it changes)."""

    difference: Difference
    adjusted_p: float | None
    verdict: str
    outliers: list[int] | None
    without: dict[int, tuple[Difference, str]]

    @property
    def resting_on(self) -> list[int]:
        return [seed for seed, (_, changed) in self.without.items() if changed != self.verdict]


def _verdicts(contrasts: Sequence[Contrast]) -> tuple[list[Difference], list[float | None], list[str]]:
    found = [difference(c.first, c.second, c.same_shapes) for c in contrasts]
    adjusted, verdicts = zip(*family(found), strict=True) if found else ((), ())
    return found, list(adjusted), list(verdicts)


def family(differences: Sequence[Difference]) -> list[tuple[float | None, str]]:
    """Each difference's Holm-adjusted p-value and verdict, the differences being one family."""
    adjusted = holm([d.p for d in differences])
    return [(p, verdict(d, p)) for d, p in zip(differences, adjusted, strict=True)]


def _outliers(values: Mapping[int, float]) -> list[int]:
    """The seeds whose value is an outlier among the others': its studentised deleted residual
    ``(v_s − mean_others) / (sd_others·√(1 + 1/(n − 1)))``, t-distributed with n − 2 degrees of freedom for
    normal values, beyond the two-sided 5 % level shared out over the n seeds (Bonferroni)."""
    from scipy.special import stdtrit

    n = len(values)
    if n < OUTLIER_MIN_SEEDS:
        return []
    bound = float(stdtrit(n - 2, 1 - 0.025 / n))
    found = []
    for seed, value in values.items():
        others = [v for s, v in values.items() if s != seed]
        mean = math.fsum(others) / len(others)
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in others) / (len(others) - 1))
        deviation = abs(value - mean)
        if deviation > 0 and (sd == 0 or deviation / (sd * math.sqrt(1 + 1 / len(others))) > bound):
            found.append(seed)
    return found


def outlying_seeds(contrast: Contrast) -> list[int] | None:
    """The seeds that are outliers in a contrast: in the per-seed differences where it is paired, else on either
    side's losses; None with fewer than `OUTLIER_MIN_SEEDS` seeds a side."""
    if min(len(contrast.first), len(contrast.second)) < OUTLIER_MIN_SEEDS:
        return None
    if pairable(contrast.first, contrast.second, contrast.same_shapes):
        differences = {seed: contrast.first[seed] - contrast.second[seed] for seed in contrast.first}
        return sorted(_outliers(differences))
    return sorted(set(_outliers(contrast.first)) | set(_outliers(contrast.second)))


def judge_family(contrasts: Sequence[Contrast]) -> list[Judged]:
    """Every contrast's interval and verdict, the contrasts being one family (Holm), its outlying seeds and what
    the family says of it without each."""
    found, adjusted, verdicts = _verdicts(contrasts)
    outliers = [outlying_seeds(contrast) for contrast in contrasts]
    again = {
        seed: _verdicts([contrast.without(seed) for contrast in contrasts])
        for seed in sorted({seed for found_here in outliers for seed in found_here or ()})
    }
    judged = []
    for index, contrast_outliers in enumerate(outliers):
        without = {seed: (again[seed][0][index], again[seed][2][index]) for seed in contrast_outliers or ()}
        judged.append(Judged(found[index], adjusted[index], verdicts[index], contrast_outliers, without))
    return judged


def judged_json(judged: Judged) -> dict[str, Any]:
    """What report.json records of a judged contrast besides its difference: the Holm-adjusted p, the verdict,
    the outlying seeds and the difference and verdict without each, and the seeds the verdict rests on."""
    return {
        "p_holm": judged.adjusted_p,
        "verdict": judged.verdict,
        "outlying_seeds": judged.outliers,
        "without_outliers": {
            str(seed): {"delta": found.delta, "low": found.low, "high": found.high, "verdict": changed}
            for seed, (found, changed) in judged.without.items()
        },
        "resting_on": judged.resting_on,
    }


def outlier_note(row: Mapping[str, Any], words: Mapping[str, str] | None = None) -> str:
    """' (seed 1338 is an outlier: without it +0.0150 [+0.0120, +0.0180], hurts)' for a `judged_json` row
    ('' without outlying seeds; `words` rename the verdicts)."""
    notes = []
    for seed, found in row["without_outliers"].items():
        interval = "" if found["low"] is None else f" [{found['low']:+.4f}, {found['high']:+.4f}]"
        changed = int(seed) in row["resting_on"]
        said = (words or {}).get(found["verdict"], found["verdict"])
        notes.append(
            f"{'rests on' if changed else 'holds without'} seed {seed}, an outlier: without it "
            f"{found['delta']:+.4f}{interval}, {said}"
        )
    return f" ({'; '.join(notes)})" if notes else ""
