"""``cleangpt ablate``'s verdicts: each lever's change of the mean validation loss against the base, with its interval.

A lever's runs and the base's differ in the lever and, seed for seed, in nothing else; over the seeds each
side's final validation losses are a small sample (3 seeds: 3 numbers). The difference of the two means gets
Welch's t-interval (95 %, unequal variances; `scipy.stats.ttest_ind(..., equal_var=False)`), which assumes
neither equal spreads nor a pairing of seeds (a seed sets initialisation and data order, but a lever that
changes the model's shape draws other initial weights from the same seed, so pairs need not be alike). The
verdict reads the interval: *helps* when it lies wholly below zero (the lever lowers the loss), *hurts* when
wholly above, otherwise *within noise*: these seeds cannot tell the lever from no change.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

CONFIDENCE = 0.95
INTERVAL_METHOD = "Welch's t-interval (95 %, unequal variances) of the difference of the mean final validation losses"


def lever_verdict(lever: Sequence[float], base: Sequence[float]) -> dict[str, Any]:
    """Δ (lever − base) of the mean validation losses, its 95 % interval and the verdict (needs 2+ runs each)."""
    from scipy import stats

    delta = math.fsum(lever) / len(lever) - math.fsum(base) / len(base)
    if len(lever) < 2 or len(base) < 2:
        return {"delta": delta, "low": None, "high": None, "verdict": "within noise"}
    with warnings.catch_warnings():  # identical losses on a side: scipy warns, the interval is the point itself
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = stats.ttest_ind(list(lever), list(base), equal_var=False).confidence_interval(CONFIDENCE)
    low, high = float(interval.low), float(interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        low = high = delta
    verdict = "hurts" if low > 0 else "helps" if high < 0 else "within noise"
    return {"delta": delta, "low": low, "high": high, "verdict": verdict}


def ablation_rows(results: Sequence[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    """One row per lever (every contender but `base`, in order): its verdict against the base."""
    losses: dict[str, list[float]] = {}
    for result in results:
        if result.get("val_loss") is not None:
            losses.setdefault(result["label"], []).append(result["val_loss"])
    rows = []
    for label, values in losses.items():
        if label != base and base in losses:
            rows.append({"lever": label, "seeds": len(values), **lever_verdict(values, losses[base])})
    return rows


def ablation_table(rows: Sequence[dict[str, Any]], base: str) -> str:
    """The Markdown table: lever | Δ mean val loss vs base | 95 % interval | verdict."""
    lines = [
        f"| lever | Δ mean val loss vs {base} | 95 % interval of the difference | verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    for row in rows:
        interval = "n/a" if row["low"] is None else f"[{row['low']:+.4f}, {row['high']:+.4f}]"
        lines.append(f"| {row['lever']} | {row['delta']:+.4f} | {interval} | {row['verdict']} |")
    return "\n".join(lines)


def ablation_section(results: Sequence[dict[str, Any]], base: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The report's ablation section (Markdown lines) and its rows (for report.json)."""
    rows = ablation_rows(results, base)
    lines = [
        "## Ablation",
        "",
        f"Each lever is `{base}` with that one change, trained on the same seeds. Δ is the lever's mean final "
        f"validation loss minus the base's (negative: the lever lowers the loss); the interval is {INTERVAL_METHOD} "
        "over the seeds; a verdict is *helps* or *hurts* only when the interval excludes zero, otherwise *within "
        "noise*.",
        "",
        ablation_table(rows, base),
        "",
    ]
    return lines, rows
