"""The report's ladder section: the rungs' compute, each contender's power law, the forecast check and the compute
multipliers with their bootstrap intervals (definitions in `cleangpt_core.experiments.scaling_fit`), and the
log-log plot ``ladder.png`` of loss against compute with the fits extended to 10× the largest rung's compute."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.flops import FLOPS_FORMULA, N_COUNTS, model_parameters, training_flops
from cleangpt_core.experiments.plan import tokens_per_step
from cleangpt_core.experiments.report import save_figure
from cleangpt_core.experiments.scaling_fit import (
    CONFIDENCE,
    RESAMPLES,
    Point,
    PowerLaw,
    bootstrap_multiplier,
    compute_multiplier,
    fit_points,
    forecast_check,
)

if TYPE_CHECKING:
    from cleangpt_core.experiments.plan import ComparisonPlan

LADDER_PNG = "ladder.png"
INFINITE = "inf"  # how report.json writes an unreachable multiplier (JSON has no infinity)
EXTEND = 10.0  # the plot's fits run on to this many times the largest rung's compute


def rung_rows(plan: ComparisonPlan, results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per contender and rung: its settings, N, D, C, and its final validation losses over seeds."""
    ladder = plan.ladder
    assert ladder is not None
    rows = []
    for label in plan.labels:
        contender, rung = ladder.position(label)
        runs = [r for r in results if r["label"] == label]
        config = next(run for run in plan.runs if run.label == label).load()
        model = config.model
        parameters = model_parameters(model)
        tokens = plan.max_steps[label] * tokens_per_step(config)
        losses = [r["val_loss"] for r in runs if r.get("val_loss") is not None and math.isfinite(r["val_loss"])]
        rows.append(
            {
                "contender": contender,
                "rung": rung + 1,
                "settings": ladder.describe(rung),
                "parameters": parameters,
                "tokens": tokens,
                "flops": training_flops(parameters, tokens, model.n_layer, model.block_size, model.n_embd),
                "seeds": [r.get("seed") for r in runs],
                "val_losses": losses,
                "val_loss_mean": statistics.fmean(losses) if losses else None,
                "val_loss_std": statistics.stdev(losses) if len(losses) > 1 else None,
            }
        )
    return rows


def _points(rows: Sequence[dict[str, Any]], contender: str) -> list[Point]:
    return [
        Point(row["rung"] - 1, float(row["flops"]), loss)
        for row in rows
        if row["contender"] == contender
        for loss in row["val_losses"]
    ]


def _law(fit: PowerLaw) -> dict[str, float]:
    return {"E": fit.floor, "A": fit.scale, "alpha": fit.alpha}


def ladder_summary(
    plan: ComparisonPlan, results: Sequence[dict[str, Any]], *, resamples: int = RESAMPLES
) -> dict[str, Any]:
    """What report.json records of a ladder: the rungs, and per contender its fit, forecast and multiplier (with
    its bootstrap interval over `resamples` resamples)."""
    ladder = plan.ladder
    assert ladder is not None
    rows = rung_rows(plan, results)
    points = {contender: _points(rows, contender) for contender in ladder.contenders}
    fits: dict[str, PowerLaw | None] = {}
    for contender, found in points.items():
        try:
            fits[contender] = fit_points(found)
        except ConfigError:  # rungs without a finite loss (every tuning trial failed, a run diverged)
            fits[contender] = None
    reference = ladder.contenders[0]
    at = float(max(row["flops"] for row in rows if row["contender"] == reference))
    contenders = {}
    for contender in ladder.contenders:
        fit = fits[contender]
        entry: dict[str, Any] = {"fit": _law(fit) if fit is not None else None, "forecast": None, "multiplier": None}
        if fit is not None:
            entry["forecast"] = forecast_check(points[contender])
            if contender != reference and fits[reference] is not None:
                interval = bootstrap_multiplier(points[reference], points[contender], at, resamples=resamples)
                entry["multiplier"] = {
                    "value": _json_number(compute_multiplier(fits[reference], fit, at)),
                    "low": _json_number(interval[0]) if interval else None,
                    "high": _json_number(interval[1]) if interval else None,
                }
        contenders[contender] = entry
    return {
        "keys": list(ladder.keys),
        "tokens_per_param": ladder.tokens_per_param,
        "flops_formula": FLOPS_FORMULA,
        "parameters_counted": N_COUNTS,
        "reference": reference,
        "multiplier_at_flops": at,
        "bootstrap": {"resamples": resamples, "confidence": CONFIDENCE},
        "rungs": rows,
        "contenders": contenders,
    }


def _json_number(value: float) -> float | str:
    return INFINITE if math.isinf(value) else value


def _number(value: float | str | None, spec: str) -> str:
    return "n/a" if value is None else "∞" if value == INFINITE else format(value, spec)


def _multiplier_cell(multiplier: dict[str, Any] | None) -> str:
    if multiplier is None:
        return "n/a"
    value = _number(multiplier["value"], ".3g") + "×"
    if multiplier["low"] is None:
        return f"{value} (one seed per rung: no interval)"
    return f"{value} [{_number(multiplier['low'], '.3g')}, {_number(multiplier['high'], '.3g')}]"


def plot_ladder(summary: dict[str, Any], path: Path) -> None:
    """Loss against compute on log-log axes: each seed's final validation loss, and each contender's fit from
    its smallest rung to `EXTEND` times its largest."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for contender, entry in summary["contenders"].items():
        rows = [row for row in summary["rungs"] if row["contender"] == contender]
        xs = [row["flops"] for row in rows for _ in row["val_losses"]]
        ys = [loss for row in rows for loss in row["val_losses"]]
        (dots,) = axes.plot(xs, ys, "o", markersize=4, label=f"{contender} (each seed)")
        if entry["fit"] is not None and xs:
            fit = PowerLaw(entry["fit"]["E"], entry["fit"]["A"], entry["fit"]["alpha"])
            line = np.geomspace(min(xs), EXTEND * max(xs), 100)
            axes.plot(line, fit.loss(line), "-", color=dots.get_color(), linewidth=1, label=f"{contender} fit")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(f"training compute C (FLOPs; fits extended to {EXTEND:g}× the largest rung)")
    axes.set_ylabel("final validation loss (nats/token)")
    axes.grid(alpha=0.3, which="both")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    save_figure(figure, path)


def ladder_section(summary: dict[str, Any], out_dir: Path, tuned: bool) -> list[str]:
    """The Markdown lines of the ladder section (and its plot, written into `out_dir`)."""
    plot_ladder(summary, out_dir / LADDER_PNG)
    budget = (
        f"{summary['tokens_per_param']:g} tokens per parameter N (in whole optimizer steps)"
        if summary["tokens_per_param"] is not None
        else "the same --max-tokens"
    )
    reference, at, bootstrap = summary["reference"], summary["multiplier_at_flops"], summary["bootstrap"]
    lines = [
        "## Ladder",
        "",
        f"Every contender trained at every rung ({', '.join(f'`{key}`' for key in summary['keys'])}), each rung "
        f"to {budget}. Training compute: {FLOPS_FORMULA}, with D the training tokens; {N_COUNTS}.",
        "",
    ]
    if tuned:
        lines += [
            "Tuned at the smallest rung, then transferred: each contender's best setting from the tuning above "
            "trained every rung (it holds across widths under model.parametrization=mup).",
            "",
        ]
    lines += [
        "| contender | rung | settings | N | tokens D | FLOPs C | seeds | val loss (mean ± std) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary["rungs"]:
        loss = _number(row["val_loss_mean"], ".4f")
        if row["val_loss_std"] is not None:
            loss += f" ± {row['val_loss_std']:.4f}"
        lines.append(
            f"| {row['contender']} | {row['rung']} | {row['settings']} | {row['parameters']:,} "
            f"| {row['tokens']:,} | {row['flops']:.3e} | {len(row['val_losses'])} | {loss} |"
        )
    lines += [
        "",
        "Per contender, L(C) = E + A·C^(−α) fitted to every seed's final validation loss by the Huber loss "
        "(δ = 1e-3) between log-sum-exp predictions and log losses, L-BFGS from a grid of starts (Chinchilla's "
        "third approach). Forecast: the fit on every rung but the largest, predicting the largest (predicted − "
        "measured mean, nats; it needs four rungs). Compute multiplier of X: the compute "
        f"{reference} needs (by its fit) to reach X's fitted loss at C* = {at:.3e} FLOPs ({reference}'s "
        "largest rung), divided by C*; above 1, X is worth that many times the compute. Interval: "
        f"{bootstrap['confidence']:.0%} percentile bootstrap over seeds ({bootstrap['resamples']} "
        "resamples of each rung's seeds with replacement, both fits redone; fixed generator seed).",
        "",
        f"| contender | E | A | α | forecast at the largest rung (predicted / measured / error) | compute "
        f"multiplier vs {reference} |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for contender, entry in summary["contenders"].items():
        fit, forecast = entry["fit"], entry["forecast"]
        if fit is None:
            lines.append(f"| {contender} | no fit: fewer than 3 rungs with a finite loss | | | n/a | n/a |")
            continue
        check = (
            "n/a (needs 4 rungs)"
            if forecast is None
            else f"{forecast['predicted']:.4f} / {forecast['measured']:.4f} / {forecast['error']:+.4f}"
        )
        multiplier = "1 (reference)" if contender == reference else _multiplier_cell(entry["multiplier"])
        lines.append(f"| {contender} | {fit['E']:.4f} | {fit['A']:.4g} | {fit['alpha']:.4f} | {check} | {multiplier} |")
    lines += ["", f"![Loss against compute, with the fits]({LADDER_PNG})", ""]
    return lines
