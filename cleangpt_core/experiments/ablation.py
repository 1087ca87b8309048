"""``cleangpt ablate``'s verdicts: each lever's change of the mean validation loss against the base, with its interval.

A lever's runs and the base's differ in the lever and, seed for seed, in nothing else; over the seeds each
side's final validation losses are a small sample (3 seeds: 3 numbers). The difference of the two means gets a
95 % t-interval (`cleangpt_core.experiments.verdicts`): paired over the seeds where the lever keeps the model's
shapes (the same seed then draws the same initial weights and data order for both, and the per-seed differences
cancel them) and there are at least `PAIRED_MIN_SEEDS` seeds, else Welch's (unequal variances, no pairing). A
lever keeps the shapes, as far as the results tell, when its model type and both parameter counts equal the
base's; where that misjudges a lever, pairing costs power, never coverage (a paired interval is valid whatever
the correlation). The levers are one family: a verdict *helps* (the lever lowers the loss) or *hurts* needs
Holm's correction of the levers' p-values at 5 %, so that with k levers that do nothing the chance of any
verdict stays at or below 5 %; otherwise *within noise*: these seeds cannot tell the lever from no change. A
seed whose run is an outlier among the other seeds' is named, with the lever's difference and verdict without
that seed (`cleangpt_core.experiments.verdicts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cleangpt_core.experiments.calibration_notes import coverage_note, interval_notes
from cleangpt_core.experiments.verdicts import (
    CORRECTION,
    PAIRED,
    PAIRING,
    Contrast,
    judge_family,
    judged_json,
    losses_by_seed,
    outlier_note,
    same_shapes,
    shapes,
)

CONFIDENCE = 0.95
INTERVAL_METHOD = f"{PAIRING}, of the difference of the mean final validation losses"


def ablation_rows(results: Sequence[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    """One row per lever (every contender but `base`, in order): its difference, interval, Holm-adjusted p,
    verdict and the seeds the verdict rests on."""
    losses, shape = losses_by_seed(results), shapes(results)
    if base not in losses:
        return []
    levers = [label for label in losses if label != base]
    contrasts = [Contrast(losses[lever], losses[base], same_shapes(shape[lever], shape[base])) for lever in levers]
    rows = []
    for lever, contrast, judged in zip(levers, contrasts, judge_family(contrasts), strict=True):
        found = judged.difference
        rows.append(
            {
                "lever": lever,
                "seeds": len(contrast.first),
                "delta": found.delta,
                "low": found.low,
                "high": found.high,
                "p": found.p,
                "method": found.method,
                **judged_json(judged),
            }
        )
    return rows


def ablation_table(rows: Sequence[dict[str, Any]], base: str) -> str:
    """The Markdown table: lever | Δ mean val loss vs base | 95 % interval | its method | Holm's p | verdict."""
    lines = [
        f"| lever | Δ mean val loss vs {base} | 95 % interval of the difference | method | p (Holm) | verdict |",
        "| --- | ---: | ---: | --- | ---: | --- |",
    ]
    for row in rows:
        interval = "n/a" if row["low"] is None else f"[{row['low']:+.4f}, {row['high']:+.4f}]"
        p = "n/a" if row["p_holm"] is None else f"{row['p_holm']:.3g}"
        kind = "paired" if row["method"] == PAIRED else "Welch"
        lines.append(
            f"| {row['lever']} | {row['delta']:+.4f} | {interval} | {kind} | {p} "
            f"| {row['verdict']}{outlier_note(row)} |"
        )
    return "\n".join(lines)


def ablation_section(results: Sequence[dict[str, Any]], base: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The report's ablation section (Markdown lines) and its rows (for report.json)."""
    rows = ablation_rows(results, base)
    calibrated = interval_notes([row["method"] for row in rows])
    lines = [
        "## Ablation",
        "",
        f"Each lever is `{base}` with that one change, trained on the same seeds. Δ is the lever's mean final "
        f"validation loss minus the base's (negative: the lever lowers the loss); the interval is {INTERVAL_METHOD} "
        f"over the seeds ({calibrated}). The {len(rows)} levers are one family: a verdict is *helps* or "
        f"*hurts* only where {CORRECTION} rejects no change ({coverage_note('family')}), otherwise *within "
        "noise*; an interval that excludes zero with a verdict *within noise* is one the family's correction does "
        "not accept. A seed whose run is an outlier among the others' (it takes 4 seeds to tell) is named, with Δ "
        "and the verdict without it; a verdict that changes without it rests on that seed.",
        "",
        ablation_table(rows, base),
        "",
    ]
    return lines, rows
