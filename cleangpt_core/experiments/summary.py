"""What a comparison's runs say per contender: the mean and spread over seeds, and the tokens to a target loss.

A contender's runs differ only in their seed, so their spread is the noise a difference between contenders has
to beat. The final validation loss of each run is measured at the end of its token budget (on up to
``data.eval_tokens`` validation tokens); a contender's figure is the mean over its seeds, its spread the
sample standard deviation (n - 1 in the denominator; none with one seed). Two contenders' difference counts
as *smaller than the seed spread* when the gap between their means is below the larger of their two standard
deviations.

The tokens a run needed to reach a target loss are read from its validation curve without interpolation: the
tokens seen at its first evaluation whose loss was at or below the target. The true crossing lies between that
evaluation and the one before, so the figure is exact to one evaluation interval (``trainer.eval_interval``,
or ``cleangpt compare --eval-tokens``), and never earlier than what was measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def tokens_to_target(result: dict[str, Any], target: float) -> dict[str, int] | None:
    """The ``step`` and ``tokens`` of a run's first evaluation at or below `target`; None if none reached it."""
    for step, loss in result.get("val_curve") or []:
        if loss <= target:
            return {"step": step, "tokens": step * result["tokens_per_step"]}
    return None


def _mean(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.fmean(known) if known else None


def _std(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def curve_band(results: Sequence[dict[str, Any]]) -> list[list[float]]:
    """``[tokens, mean, min, max]`` of a contender's validation loss at each step every seed evaluated."""
    curves = [dict((step, loss) for step, loss in result.get("val_curve") or []) for result in results]
    if not curves:
        return []
    shared = sorted(set.intersection(*(set(curve) for curve in curves)))
    per_step = results[0]["tokens_per_step"]
    band = []
    for step in shared:
        losses = [curve[step] for curve in curves]
        band.append([step * per_step, statistics.fmean(losses), min(losses), max(losses)])
    return band


def summarize_contender(results: Sequence[dict[str, Any]], target: float | None) -> dict[str, Any]:
    """One contender's figures over its seeds (its runs' results, one per seed)."""
    first = results[0]
    final = [r["val_loss"] for r in results if r.get("val_loss") is not None]
    summary: dict[str, Any] = {
        "label": first["label"],
        "model_type": first["model_type"],
        "model": first.get("model", first["model_type"]),  # results from before 2026-12 have no description
        "seeds": [r.get("seed") for r in results],
        "parameters": first.get("parameters"),
        "all_parameters": first.get("all_parameters"),
        "steps": first.get("steps"),
        "tokens": first.get("tokens"),
        "val_loss_mean": _mean(final),
        "val_loss_std": _std(final),
        "val_loss_min": min(final, default=None),
        "val_loss_max": max(final, default=None),
        "train_loss_mean": _mean([r.get("train_loss") for r in results]),
        "tokens_per_s_mean": _mean([r.get("tokens_per_s") for r in results]),
        "wall_s_total": sum(r["wall_s"] for r in results),
        "val_curve_band": curve_band(results),
    }
    if target is not None:
        reached = [tokens_to_target(r, target) for r in results]
        hits = [hit for hit in reached if hit is not None]
        summary["target"] = {
            "loss": target,
            "reached": len(hits),
            "runs": len(results),
            "per_seed": reached,
            # over the seeds that reached it; `reached` of `runs` says how many that is
            "tokens_mean": _mean([hit["tokens"] for hit in hits]),
            "steps_mean": _mean([hit["step"] for hit in hits]),
        }
    return summary


def summarize(results: Sequence[dict[str, Any]], target: float | None = None) -> list[dict[str, Any]]:
    """Every contender's summary, in the order its first run appears in `results`."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_label.setdefault(result["label"], []).append(result)
    return [summarize_contender(runs, target) for runs in by_label.values()]


def spread_verdicts(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each pair of contenders with a spread (two seeds or more each), whether the gap between their mean
    final validation losses is smaller than the larger of their standard deviations; the better one first."""
    measured = sorted((s for s in summaries if s["val_loss_std"] is not None), key=lambda s: s["val_loss_mean"])
    verdicts = []
    for index, better in enumerate(measured):
        for worse in measured[index + 1 :]:
            gap = worse["val_loss_mean"] - better["val_loss_mean"]
            spread = max(better["val_loss_std"], worse["val_loss_std"])
            verdicts.append(
                {
                    "better": better["label"],
                    "worse": worse["label"],
                    "gap": gap,
                    "spread": spread,
                    "within_spread": gap < spread,
                }
            )
    return verdicts
