"""The calibration harness's grid (issue 30): every interval and verdict the reports print, against simulated studies.

Runs `cleangpt_core.experiments.calibration` over its design grid and writes `benchmarks/results/calibration.md`
(the tables; every cell's counts in `calibration_cells.json` beside it) and
`cleangpt_core/experiments/calibration.json` (the headline figures the reports quote):

- ladders: 2, 3 and 5 seeds × 3 to 6 rungs × seed noise 0.005, 0.01, 0.02, 0.05 nats and one heteroscedastic
  case × true multipliers 0.5, 1, 2 and 4, through `ladder_report.ladder_statistics`;
- ablations of 7 levers (all doing nothing, or 3 nothing and 4 ±0.02 nats) × 2, 3, 5 seeds × the same noise ×
  seed correlations 0, 0.6, 0.9 with levers that keep the shapes or not, through `ablation.ablation_rows`; one
  lever with a run gone wrong (outlying seeds named);
- comparisons of 3 contenders (equal, or 0.02 nats apart) through `report.pair_verdicts`, and the seed-spread
  rule the reports used before;
- the conventions: the fit's loss (least squares against the previous Huber δ = 1e-3 in log space), the interval
  (bootstrap-t against the percentile interval of the same draws and against the previous resampling of seeds
  within rungs, on the issue's designs), and N (a fit that does not see an output head's share of the compute).

The previous fit and interval are kept here, as they were in `scaling_fit` before issue 30, for the comparison
only. Every cell draws from a numpy Generator seeded by its index: the figures are the same on every run.
One core, under the shared benchmark lock:

    OMP_NUM_THREADS=1 flock -s /tmp/cleangpt-bench.lock python benchmarks/bench_calibration.py
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cleangpt_core.experiments.calibration import (
    CONTENDER,
    REFERENCE,
    AblationDesign,
    ComparisonDesign,
    LadderDesign,
    design_json,
    run_cell,
    simulate_ablation,
    simulate_ladder,
)
from cleangpt_core.experiments.calibration_notes import CALIBRATION_JSON, points
from cleangpt_core.experiments.scaling_fit import (
    CONFIDENCE,
    RULES,
    Point,
    PowerLaw,
    Runs,
    _draw,
    _origin,
    fit_points,
    multiplier_estimate,
)
from cleangpt_core.experiments.verdicts import welch

RESULTS = Path(__file__).resolve().parent / "results"
NOISES: tuple[float | None, ...] = (0.005, 0.01, 0.02, 0.05, None)
NULL_LEVERS = (0.0,) * 7
MIXED_LEVERS = (0.0, 0.0, 0.0, 0.02, 0.02, -0.02, -0.02)
PAIRINGS = ((0.0, False), (0.0, True), (0.6, True), (0.6, False), (0.9, True), (0.9, False))
ISSUE_CELLS = (LadderDesign(5, 2, 0.02, 2.0), LadderDesign(5, 3, 0.02, 2.0), LadderDesign(4, 2, 0.02, 2.0))
HEAD_SHARE = (0.35, 0.14)  # the output head's share of the compute at the record's smallest and largest rung


def ladder_grid() -> list[LadderDesign]:
    return [
        LadderDesign(rungs, seeds, noise, multiplier)
        for seeds, rungs, noise, multiplier in itertools.product((2, 3, 5), (3, 4, 5, 6), NOISES, (0.5, 1.0, 2.0, 4.0))
    ]


def ablation_grid() -> list[AblationDesign]:
    return [
        AblationDesign(seeds, noise, effects, correlation, same)
        for seeds, noise, effects, (correlation, same) in itertools.product(
            (2, 3, 5), NOISES[:-1], (NULL_LEVERS, MIXED_LEVERS), PAIRINGS
        )
    ]


def outlier_grid() -> list[AblationDesign]:
    return [
        AblationDesign(seeds, 0.01, NULL_LEVERS, correlation, same, outlier=size * 0.01)
        for seeds, size, (correlation, same) in itertools.product((4, 5), (5, 10), ((0.6, True), (0.0, False)))
    ]


def comparison_grid() -> list[ComparisonDesign]:
    return [
        ComparisonDesign(seeds, noise, offsets)
        for seeds, noise, offsets in itertools.product((2, 3, 5), NOISES[:-1], ((0.0, 0.0, 0.0), (0.0, 0.02, 0.04)))
    ]


def run_grid(name: str, designs: Sequence[Any], studies: int, offset: int) -> list[dict[str, Any]]:
    cells = []
    start = time.perf_counter()
    for index, design in enumerate(designs):
        counts = run_cell(design, studies, offset + index)
        cells.append({"design": design_json(design), "counts": dict(counts)})
        if (index + 1) % 20 == 0 or index + 1 == len(designs):
            print(f"{name}: {index + 1}/{len(designs)} cells, {time.perf_counter() - start:.0f} s", flush=True)
    return cells


# -- the previous fit and interval (scaling_fit before issue 30), for the comparison ---------------------------

HUBER_DELTA = 1e-3
_E_FRACTIONS, _A_FACTORS, _ALPHAS = (0.05, 0.3, 0.6, 0.9), (0.3, 1.0, 3.0), (0.05, 0.2, 0.5, 1.0)


def _huber(theta: np.ndarray, x: np.ndarray, log_loss: np.ndarray) -> tuple[float, np.ndarray]:
    e, a, alpha = theta
    power = a - alpha * x
    predicted = np.logaddexp(e, power)
    residual = predicted - log_loss
    small = np.abs(residual) <= HUBER_DELTA
    value = np.where(small, 0.5 * residual**2, HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA)).sum()
    slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA)
    weight_e, weight_a = np.exp(e - predicted), np.exp(power - predicted)
    return float(value), np.array([(slope * weight_e).sum(), (slope * weight_a).sum(), -(slope * weight_a * x).sum()])


def previous_fit(points: Sequence[Point], start: PowerLaw | None = None) -> PowerLaw:
    """The Huber (δ = 1e-3) fit in log space by L-BFGS from a grid of 48 starts (or from `start` alone)."""
    from scipy.optimize import minimize

    c = np.array([p.compute for p in points])
    log_loss = np.log([p.loss for p in points])
    reference = float(c.min())
    x = np.log(c / reference)
    if start is not None:
        starts = [
            np.array([math.log(start.floor), math.log(start.scale) - start.alpha * math.log(reference), start.alpha])
        ]
    else:
        lowest = float(np.exp(log_loss.min()))
        above = max(float(np.exp(log_loss[x == 0].mean())) - lowest, 1e-3)
        starts = [
            np.array([math.log(f * lowest), math.log(k * (lowest * (1 - f) + above)), a])
            for f, k, a in itertools.product(_E_FRACTIONS, _A_FACTORS, _ALPHAS)
        ]
    found = [minimize(_huber, s, args=(x, log_loss), jac=True, method="L-BFGS-B") for s in starts]
    e, a, alpha = min(found, key=lambda f: f.fun).x
    return PowerLaw(math.exp(e), math.exp(a + alpha * math.log(reference)), float(alpha))


def previous_multiplier(reference: PowerLaw, other: PowerLaw, at: float) -> float:
    return reference.compute_for(float(other.loss(at))) / at


def previous_interval(reference: Sequence[Point], other: Sequence[Point], at: float) -> tuple[float, float]:
    """Seeds resampled within each rung, both fits redone from the full fits, 300 times: the percentiles."""
    generator = np.random.default_rng(0)
    fits = previous_fit(reference), previous_fit(other)

    def resample(points: Sequence[Point]) -> list[Point]:
        drawn: list[Point] = []
        for rung in sorted({p.rung for p in points}):
            seeds = [p for p in points if p.rung == rung]
            drawn += [seeds[i] for i in generator.integers(0, len(seeds), size=len(seeds))]
        return drawn

    values = [
        previous_multiplier(previous_fit(resample(reference), fits[0]), previous_fit(resample(other), fits[1]), at)
        for _ in range(300)
    ]
    low, high = np.quantile(values, [0.025, 0.975], method="nearest")
    return float(low), float(high)


def _study_points(design: LadderDesign, generator: np.random.Generator) -> tuple[list[Point], list[Point], float]:
    rows, _, _ = simulate_ladder(design, generator)
    reference, other = (
        [
            Point(row["rung"] - 1, row["flops"], loss)
            for row in rows
            if row["contender"] == name
            for loss in row["val_losses"]
        ]
        for name in (REFERENCE, CONTENDER)
    )
    return reference, other, max(p.compute for p in reference)


def interval_methods(design: LadderDesign, studies: int, previous_studies: int, seed: int) -> dict[str, Any]:
    """On one design: the previous interval's coverage (every study), and the bootstrap-t's and the percentile
    interval's of the same draws where the multiplier is given."""
    generator = np.random.default_rng(seed)
    counts: Counter = Counter()
    for index in range(studies):
        reference, other, at = _study_points(design, generator)
        if index < previous_studies:
            low, high = previous_interval(reference, other, at)
            counts["previous"] += 1
            counts["previous covered"] += low <= design.multiplier <= high
        if multiplier_estimate(reference, other, at).withheld is not None:
            continue
        origin = _origin(reference, other)
        drawn = _draw([Runs.of(reference, origin), Runs.of(other, origin)], math.log(at) - origin, 400, 0)
        low, high = drawn.interval()
        percentile = np.quantile(np.exp(drawn.drawn), [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
        counts["given"] += 1
        counts["t covered"] += low <= design.multiplier <= high
        counts["percentile covered"] += percentile[0] <= design.multiplier <= percentile[1]
    return {"design": design_json(design), "studies": studies, "counts": {k: int(v) for k, v in counts.items()}}


def fit_losses(design: LadderDesign, studies: int, seed: int) -> dict[str, Any]:
    """The multiplier's point error and the time per fit, least squares against the previous Huber fit."""
    generator = np.random.default_rng(seed)
    errors: dict[str, list[float]] = {"least squares": [], "previous Huber": []}
    seconds = dict.fromkeys(errors, 0.0)
    fits = {"least squares": fit_points, "previous Huber": previous_fit}
    for _ in range(studies):
        reference, other, at = _study_points(design, generator)
        for name, fit in fits.items():
            start = time.perf_counter()
            laws = fit(reference), fit(other)
            seconds[name] += (time.perf_counter() - start) / 2
            value = previous_multiplier(laws[0], laws[1], at)
            errors[name].append(abs(math.log(value / design.multiplier)) if 0 < value < math.inf else math.inf)
    return {
        name: {
            "median": float(np.median(found)),
            "p90": float(np.quantile(found, 0.9)),
            "seconds_per_fit": seconds[name] / studies,
        }
        for name, found in errors.items()
    }


def uncorrected_levers(seeds: int, studies: int, seed: int) -> float:
    """The previous ablation table's rate: any of 7 null levers with a Welch interval excluding zero."""
    generator = np.random.default_rng(seed)
    design = AblationDesign(seeds, 0.01, NULL_LEVERS, 0.0, False)
    hits = 0
    for _ in range(studies):
        results = simulate_ablation(design, generator)
        base = [r["val_loss"] for r in results if r["label"] == "base"]
        levers = {r["label"] for r in results} - {"base"}
        found = [welch([r["val_loss"] for r in results if r["label"] == lever], base) for lever in levers]
        hits += any(d.low > 0 or d.high < 0 for d in found)
    return hits / studies


def record_correlations() -> list[tuple[str, bool, float]]:
    """Each lever of the record's ablation (`results/ablate_speedrun_char`, 3 seeds): whether it keeps the
    base's shapes (model type and parameter counts) and the correlation over seeds of its losses' deviations
    with the base's (what the simulated `correlation` stands for)."""
    from cleangpt_core.experiments.verdicts import losses_by_seed, same_shapes, shapes

    report = json.loads((RESULTS / "ablate_speedrun_char" / "report.json").read_text(encoding="utf-8"))
    losses, shape = losses_by_seed(report["runs"]), shapes(report["runs"])
    base = report["ablation"]["base"]
    seeds = sorted(losses[base])

    def deviations(label: str) -> np.ndarray:
        values = np.array([losses[label][seed] for seed in seeds])
        return values - values.mean()

    found = []
    for lever in (label for label in losses if label != base):
        a, b = deviations(lever), deviations(base)
        found.append((lever, same_shapes(shape[lever], shape[base]), float(a @ b / math.sqrt((a @ a) * (b @ b)))))
    return found


# -- the tables -----------------------------------------------------------------------------------------------


def rate(hits: int, total: int) -> tuple[float, float]:
    """A share and its Monte-Carlo standard error."""
    if total == 0:
        return math.nan, math.nan
    share = hits / total
    return share, math.sqrt(max(share * (1 - share), 1 / total) / total)


def percent(hits: int, total: int) -> str:
    if total == 0:
        return "–"
    return points(*rate(hits, total))


def noise_words(noise: float | None) -> str:
    return "0.01 → 0.04" if noise is None else f"{noise:g}"


def ladder_table(cells: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| seeds | rungs | noise (nats) | true m | studies | multiplier given | coverage where given (%) | withheld by "
        "rule: " + " / ".join(RULES) + " | gap coverage (%) | gaps found with the true sign (%) | studies with a "
        "wrong gap verdict (%) | forecasts within tolerance (%) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for cell in cells:
        d, c = cell["design"], Counter(cell["counts"])
        withheld = " / ".join(str(c[f"withheld: {rule}"]) for rule in RULES)
        lines.append(
            f"| {d['seeds']} | {d['rungs']} | {noise_words(d['noise'])} | {d['multiplier']:g} | {c['studies']} "
            f"| {100 * c['multiplier given'] / c['studies']:.0f} % "
            f"| {percent(c['multiplier covered'], c['multiplier given'])} "
            f"| {withheld} | {percent(c['gaps covered'], c['gaps with interval'])} "
            f"| {percent(c['gap verdicts right'], c['gaps nonzero'])} "
            f"| {percent(c['studies with a wrong gap verdict'], c['studies'])} "
            f"| {percent(c['forecasts within'], c['forecasts'])} |"
        )
    return lines


def ablation_table(cells: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| seeds | noise | levers | seed correlation | shapes kept (interval) | studies | interval coverage (%) "
        "| any false verdict (%) | power: ±0.02 levers found (%) | levers naming an outlying seed (%) |",
        "| ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cell in cells:
        d, c = cell["design"], Counter(cell["counts"])
        paired = d["same_shapes"] and d["seeds"] >= 3
        kind = f"{'yes' if d['same_shapes'] else 'no'} ({'paired' if paired else 'Welch'})"
        levers = "7 null" if not any(d["effects"]) else "3 null, 4 ±0.02"
        lines.append(
            f"| {d['seeds']} | {d['noise']:g} | {levers} | {d['correlation']:g} | {kind} | {c['studies']} "
            f"| {percent(c['intervals covered'], c['intervals'])} "
            f"| {percent(c['studies with a wrong verdict'], c['studies'])} "
            f"| {percent(c['verdicts right'], c['levers with an effect'])} "
            f"| {percent(c['levers with an outlying seed named'], c['levers'])} |"
        )
    return lines


def outlier_table(cells: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| seeds | outlier (nats, one run of lever 1; noise 0.01) | seed correlation | interval | studies "
        "| the outlying seed named (%) | verdicts resting on a seed (%) |",
        "| ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for cell in cells:
        d, c = cell["design"], Counter(cell["counts"])
        lines.append(
            f"| {d['seeds']} | {d['outlier']:g} | {d['correlation']:g} | {'paired' if d['same_shapes'] else 'Welch'} "
            f"| {c['studies']} | {percent(c['outlier named'], c['studies'])} "
            f"| {percent(c['verdicts resting on one seed'], c['verdicts'])} |"
        )
    return lines


def comparison_table(cells: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| seeds | noise | contenders' true offsets | studies | interval coverage (%) | any false *better* (%) "
        "| power: true pairs found (%) | previous rule (gap above the larger std): any false claim (%) |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cell in cells:
        d, c = cell["design"], Counter(cell["counts"])
        lines.append(
            f"| {d['seeds']} | {d['noise']:g} | {', '.join(f'{o:g}' for o in d['offsets'])} | {c['studies']} "
            f"| {percent(c['intervals covered'], c['intervals'])} "
            f"| {percent(c['studies with a wrong claim'], c['studies'])} "
            f"| {percent(c['claims right'], c['pairs with a difference'])} "
            f"| {percent(c['studies with a wrong old-rule claim'], c['studies'])} |"
        )
    return lines


def pooled(
    cells: Sequence[dict[str, Any]], hits: str, total: str, keep: Callable[[dict[str, Any]], bool]
) -> tuple[int, int]:
    found = Counter()
    for cell in cells:
        if keep(cell["design"]):
            found.update(cell["counts"])
    return found[hits], found[total]


def cell_range(cells: Sequence[dict[str, Any]], hits: str, total: str, least: int) -> str:
    shares = [c["counts"].get(hits, 0) / c["counts"][total] for c in cells if c["counts"].get(total, 0) >= least]
    return f"{100 * min(shares):.1f} to {100 * max(shares):.1f} %" if shares else "–"


def cell_spread(cells: Sequence[dict[str, Any]], hits: str, total: str, least: int) -> tuple[float, float]:
    """The standard deviation (points) of the cells' shares, and the root-mean-square of their Monte-Carlo
    standard errors: the spread binomial noise alone would make."""
    counts = [(c["counts"].get(hits, 0), c["counts"][total]) for c in cells if c["counts"].get(total, 0) >= least]
    shares = np.array([h / n for h, n in counts])
    overall = shares.mean()
    noise = math.sqrt(float(np.mean([overall * (1 - overall) / n for _, n in counts])))
    return 100 * float(shares.std()), 100 * noise


def headline(grids: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    ladders, ablations, comparisons = grids["ladders"], grids["ablations"], grids["comparisons"]
    figures: dict[str, Any] = {}

    def entry(hits: int, total: int, what: str, where: str) -> dict[str, Any]:
        share, se = rate(hits, total)
        return {"rate": share, "se": se, "hits": hits, "total": total, "what": what, "where": where}

    ladder_where = "2-5 seeds, 3-6 rungs, noise 0.005-0.05 nats or growing at small rungs, true multipliers 0.5-4"
    figures["multiplier"] = entry(
        *pooled(ladders, "multiplier covered", "multiplier given", lambda d: True),
        "coverage",
        f"{ladder_where}, where the multiplier was given",
    )
    figures["gap"] = entry(
        *pooled(ladders, "gaps covered", "gaps with interval", lambda d: True), "coverage", ladder_where
    )
    even = [c for c in ladders if c["design"]["multiplier"] == 1]
    worst = max(c["counts"].get("studies with a wrong gap verdict", 0) / c["counts"]["studies"] for c in even)
    figures["gap_family"] = entry(
        *pooled(even, "studies with a wrong gap verdict", "studies", lambda d: True),
        "any gap verdict between two contenders on the same law",
        f"pooled over the {len(even)} ladder designs of m = 1; the worst design {100 * worst:.1f} % of "
        f"{even[0]['counts']['studies']}",
    )
    paired = lambda d: d["same_shapes"] and d["seeds"] >= 3  # noqa: E731  (the rule of `verdicts.pairable`)
    figures["paired"] = entry(
        *pooled(ablations, "intervals covered", "intervals", paired),
        "coverage",
        "ablations of 7 levers that keep the shapes, 3-5 seeds, noise 0.005-0.05 nats, seed correlation 0-0.9",
    )
    figures["welch"] = entry(
        *pooled(ablations, "intervals covered", "intervals", lambda d: not paired(d) and d["correlation"] == 0),
        "coverage",
        "ablations of 7 levers, 2-5 seeds, noise 0.005-0.05 nats, independent seeds; more where seeds share noise",
    )
    for key, cells, wrong, what in (
        ("family", ablations, "studies with a wrong verdict", "any false verdict among 7 levers that do nothing"),
        ("pairs", comparisons, "studies with a wrong claim", "any false *better* among 3 equal contenders"),
    ):
        null = [c for c in cells if not any(c["design"].get("effects", c["design"].get("offsets")))]
        worst = max(c["counts"].get(wrong, 0) / c["counts"]["studies"] for c in null)
        figures[key] = entry(
            *pooled(null, wrong, "studies", lambda d: True),
            what,
            f"pooled over {len(null)} null designs of 2-5 seeds, noise 0.005-0.05 nats; the worst design "
            f"{100 * worst:.1f} % of {null[0]['counts']['studies']:,}",
        )
    clean = lambda d: d["seeds"] == 2 and d["rungs"] in (4, 5) and d["noise"] is not None and d["noise"] <= 0.02  # noqa: E731
    withheld = (
        pooled(ladders, "studies", "studies", clean)[1] - pooled(ladders, "multiplier given", "studies", clean)[0]
    )
    figures["withheld"] = entry(
        withheld,
        pooled(ladders, "studies", "studies", clean)[1],
        "withheld",
        "clean power laws at 4-5 rungs and 2 seeds, noise 0.005-0.02 nats",
    )
    return figures


def write(grids: dict[str, Any], extras: dict[str, Any], figures: dict[str, Any], meta: dict[str, Any]) -> None:
    ladders = grids["ladders"]
    by_noise = "; ".join(
        f"{noise_words(noise)}: "
        + percent(*pooled(ladders, "multiplier covered", "multiplier given", lambda d, n=noise: d["noise"] == n))
        + " %"
        for noise in NOISES
    )
    spread = cell_spread(ladders, "multiplier covered", "multiplier given", 50)
    plain_null_3 = pooled(
        grids["ablations"],
        "studies with a wrong verdict",
        "studies",
        lambda d: (
            d["seeds"] == 3
            and d["noise"] == 0.01
            and not any(d["effects"])
            and not d["same_shapes"]
            and d["correlation"] == 0
        ),
    )
    null_pairs = [
        pooled(grids["comparisons"], key, "studies", lambda d: not any(d["offsets"]))
        for key in ("studies with a wrong old-rule claim", "studies with a wrong claim")
    ]
    lines = [
        "# Calibration: every interval the reports print, against simulated studies of known truth",
        "",
        f"Measured {meta['date']} on {meta['machine']}, one core (OMP_NUM_THREADS=1), 1-minute load average "
        f"{meta['load_before']:.2f} before and {meta['load_after']:.2f} after (other sessions shared the machine), "
        f"wall time {meta['wall_s'] / 60:.1f} min, CPU time {meta['cpu_s'] / 60:.1f} min:",
        "",
        "```console",
        f"$ {meta['command'].strip()}",
        "```",
        "",
        "The harness (`cleangpt_core/experiments/calibration.py`) simulates studies whose truth is known and "
        "feeds them through the functions that write the reports: `ladder_report.ladder_statistics` (fits, "
        "forecast checks, the compute multiplier or why it is withheld, the gap at every rung), "
        "`ablation.ablation_rows` (each lever's interval and verdict, Holm over the levers, outlying seeds) "
        "and `report.pair_verdicts` (a comparison's pairs). Each cell's studies draw from a numpy Generator "
        "seeded by the cell's index. ± is the Monte-Carlo standard error (binomial) of the share: at 200 studies "
        "a coverage of 95 % reads ± 1.5 points, three standard errors from 90 %.",
        "",
        "## Headline: what the reports quote",
        "",
        "| figure | aim | measured | count |",
        "| --- | --- | --- | ---: |",
    ]
    aims = {
        "multiplier": "93-97 %",
        "gap": "93-97 %",
        "gap_family": "≤ 5 %",
        "paired": "93-97 %",
        "welch": "93-97 %",
        "family": "≤ 5 %",
        "pairs": "≤ 5 %",
        "withheld": "≤ 25 %",
    }
    names = {
        "multiplier": "compute multiplier, 95 % interval, where given",
        "gap": "ladder gap at matched compute, 95 % interval",
        "gap_family": "family-wise false gap verdicts (Holm), equal contenders",
        "paired": "ablation lever / comparison pair, paired 95 % interval",
        "welch": "ablation lever / comparison pair, Welch's 95 % interval",
        "family": "family-wise false verdicts (Holm), 7 null levers",
        "pairs": "family-wise false *better* (Holm), 3 equal contenders",
        "withheld": "multiplier withheld on clean power laws, 4-5 rungs, 2 seeds",
    }
    for key, figure in figures.items():
        lines.append(
            f"| {names[key]} | {aims[key]} | {figure['what']} {points(figure['rate'], figure['se'])} % "
            f"({figure['where']}) | {figure['hits']:,} of {figure['total']:,} |"
        )
    lines += [
        "",
        "The multiplier's coverage per cell (cells with 50 or more given): "
        f"{cell_range(ladders, 'multiplier covered', 'multiplier given', 50)}, a spread of {spread[0]:.1f} points "
        f"(standard deviation) where the Monte-Carlo error alone makes {spread[1]:.1f}; by noise: {by_noise}.",
        "",
        "## Before and after",
        "",
        "| what | design | before (ladder, ablate and compare before issue 30) | after |",
        "| --- | --- | --- | --- |",
    ]
    for found in extras["intervals"]:
        d, c = found["design"], Counter(found["counts"])
        lines.append(
            f"| multiplier interval: coverage (%) | {d['rungs']} rungs, {d['seeds']} seeds, noise {d['noise']:g}, "
            f"m {d['multiplier']:g} | seeds resampled within rungs: {percent(c['previous covered'], c['previous'])} "
            f"({c['previous']} studies) | bootstrap-t: {percent(c['t covered'], c['given'])} where given ({c['given']} "
            f"of {found['studies']}); the percentile interval of the same draws: "
            f"{percent(c['percentile covered'], c['given'])} |"
        )
    lines.append(
        f"| any false verdict, 7 null levers (%) | 3 seeds, noise 0.01, no pairing | Welch per lever, no family: "
        f"{100 * extras['uncorrected']:.1f} ({extras['uncorrected_studies']} studies) | Holm: "
        f"{percent(*plain_null_3)} |"
    )
    lines.append(
        "| any false claim, 3 equal contenders (%) | 2-5 seeds, noise 0.005-0.05 | gap above the larger std: "
        f"{percent(*null_pairs[0])} | Holm: {percent(*null_pairs[1])} |"
    )
    lines += ["", "## Conventions the harness chose", ""]
    fit = extras["fit_losses"]
    lines += [
        "**The fit's loss** (on 5 rungs, 2 seeds, noise 0.02, m = 2; the same simulated ladders for both): "
        "|log(m̂ / m)|, the point multiplier's error.",
        "",
        "| fit | median | 90th percentile | seconds per fit |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {found['median']:.3f} | {found['p90']:.3f} | {found['seconds_per_fit']:.4f} |"
            for name, found in fit.items()
        ),
        "",
        "**N** (the output head's FLOPs left out of C, as the ladder counts them): the truth a power law in the "
        f"compute with the head, the head {100 * HEAD_SHARE[0]:.0f} % of it at the smallest rung and "
        f"{100 * HEAD_SHARE[1]:.0f} % at the largest (the record's shares), the fit seeing C without it; "
        "5 rungs, 2 seeds, noise 0.02.",
        "",
        "| true m | multiplier given | coverage where given (%) | the same without the unseen share |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for found in extras["unseen"]:
        d, c = found["design"], Counter(found["counts"])
        same = next(
            x
            for x in ladders
            if x["design"]["rungs"] == 5
            and x["design"]["seeds"] == 2
            and x["design"]["noise"] == 0.02
            and x["design"]["multiplier"] == d["multiplier"]
        )
        lines.append(
            f"| {d['multiplier']:g} | {100 * c['multiplier given'] / c['studies']:.0f} % "
            f"| {percent(c['multiplier covered'], c['multiplier given'])} "
            f"| {percent(same['counts'].get('multiplier covered', 0), same['counts'].get('multiplier given', 0))} |"
        )
    lines += [
        "",
        "## Ladders",
        "",
        "Two contenders; the reference on L(C) = 1.5 + A·C^(−0.15) (loss 3.2 at the smallest rung, rungs evenly "
        "spaced in log compute over 225×), the other on the same law at m times the compute, its rungs within "
        "±10 % of the reference's compute. Withheld by rule counts the studies per rule (`scaling_fit.RULES`). A "
        "gap verdict is right when it has the true sign, wrong otherwise (every verdict is wrong at m = 1, where the "
        "share of studies with one is the family-wise rate Holm bounds by 5 %).",
        "",
        *ladder_table(ladders),
        "",
        "## Ablations",
        "",
        "A base at 1.9 nats and 7 levers; seed *s* shares the given share of its noise variance between the base "
        "and every lever. Levers that keep the shapes get the paired interval from 3 seeds on, else Welch's; "
        "a verdict is false when a null lever gets one or a lever gets the wrong sign.",
        "",
        *ablation_table(grids["ablations"]),
        "",
        "**Pairing** (the power columns above, same data): with 3 seeds or more a paired interval finds more of "
        "the ±0.02 levers than Welch's where the seeds' correlation is 0.6 or more, and fewer where it is 0; "
        "coverage holds either way. The record's ablation (`results/ablate_speedrun_char`, 3 seeds) shows what "
        "the correlation is for real levers: "
        + "; ".join(
            f"{lever} {correlation:+.2f} ({'shapes kept' if kept else 'shapes changed'})"
            for lever, kept, correlation in extras["record_correlations"]
        )
        + ". Levers that keep the shapes are paired from 3 seeds on (`verdicts.PAIRED_MIN_SEEDS`).",
        "",
        "**Outlying seeds**: one run of lever 1 (a lever that does nothing) off by 5 or 10 times the noise; "
        "without outliers, the levers naming one are the table above's last column.",
        "",
        *outlier_table(grids["outliers"]),
        "",
        "## Comparisons",
        "",
        "Three contenders of different shapes (Welch), all pairs one family.",
        "",
        *comparison_table(grids["comparisons"]),
        "",
    ]
    (RESULTS / "calibration.md").write_text("\n".join(lines), encoding="utf-8")
    CALIBRATION_JSON.write_text(
        json.dumps({"measured": meta["date"], "command": meta["command"].strip(), "headline": figures}, indent=2)
        + "\n",
        encoding="utf-8",
    )


def processor() -> str:
    """The CPU's model name (Linux), else the platform's machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder-studies", type=int, default=200, help="simulated ladders per design")
    parser.add_argument("--ablation-studies", type=int, default=1000, help="simulated ablations/comparisons per design")
    parser.add_argument(
        "--previous-studies", type=int, default=100, help="ladders per issue design for the previous interval"
    )
    parser.add_argument("--interval-studies", type=int, default=400, help="ladders per issue design for the intervals")
    parser.add_argument(
        "--tables-from",
        type=Path,
        help="write the tables again from a run's calibration_cells.json, simulating nothing",
    )
    arguments = parser.parse_args()
    if arguments.tables_from is not None:
        saved = json.loads(arguments.tables_from.read_text(encoding="utf-8"))
        write(saved["grids"], saved["extras"], headline(saved["grids"]), saved["meta"])
        return
    start, cpu_start, load_before = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    grids = {
        "ablations": run_grid("ablations", ablation_grid(), arguments.ablation_studies, 10_000),
        "outliers": run_grid("outliers", outlier_grid(), arguments.ablation_studies, 20_000),
        "comparisons": run_grid("comparisons", comparison_grid(), arguments.ablation_studies, 30_000),
        "ladders": run_grid("ladders", ladder_grid(), arguments.ladder_studies, 0),
    }
    extras: dict[str, Any] = {
        "uncorrected": uncorrected_levers(3, arguments.ablation_studies, 40_000),
        "uncorrected_studies": arguments.ablation_studies,
        "unseen": [
            {"design": design_json(d), "counts": dict(run_cell(d, arguments.ladder_studies, 50_000 + i))}
            for i, d in enumerate(LadderDesign(5, 2, 0.02, m, unseen=HEAD_SHARE) for m in (0.5, 1.0, 2.0, 4.0))
        ],
        "fit_losses": fit_losses(LadderDesign(5, 2, 0.02, 2.0), arguments.ladder_studies, 60_000),
        "record_correlations": record_correlations(),
    }
    print(f"conventions done, {time.perf_counter() - start:.0f} s", flush=True)
    extras["intervals"] = [
        interval_methods(d, arguments.interval_studies, arguments.previous_studies, 70_000 + i)
        for i, d in enumerate(ISSUE_CELLS)
    ]
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{processor()} ({os.cpu_count()} cores)",
        "command": " ".join(
            [
                "OMP_NUM_THREADS=1 flock -s /tmp/cleangpt-bench.lock python benchmarks/bench_calibration.py",
                *sys.argv[1:],
            ]
        ),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "wall_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu_start,
    }
    figures = headline(grids)
    write(grids, extras, figures, meta)
    (RESULTS / "calibration_cells.json").write_text(
        json.dumps({"meta": meta, "grids": grids, "extras": extras}, indent=1) + "\n", encoding="utf-8"
    )
    print(f"wrote {RESULTS / 'calibration.md'} and {CALIBRATION_JSON} in {meta['wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
