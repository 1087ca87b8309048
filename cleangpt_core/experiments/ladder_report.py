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
from cleangpt_core.experiments.calibration_notes import coverage_note
from cleangpt_core.experiments.flops import FLOPS_FORMULA, N_COUNTS, model_parameters, training_flops
from cleangpt_core.experiments.ladder_outlook import identification_outlook
from cleangpt_core.experiments.plan import tokens_per_step
from cleangpt_core.experiments.report import save_figure
from cleangpt_core.experiments.scaling_fit import (
    CONFIDENCE,
    FIT_METHOD,
    FLOOR_SHARE,
    GAP_METHOD,
    INTERVAL_METHOD,
    RANGE_FACTOR,
    RESAMPLES,
    Point,
    PowerLaw,
    fit_points,
    forecast_check,
    matched_gaps,
    multiplier_estimate,
)
from cleangpt_core.experiments.tuning_report import transfer_sentence
from cleangpt_core.experiments.verdicts import CORRECTION, HELPS, HURTS, WITHIN_NOISE, family

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cleangpt_core.experiments.plan import ComparisonPlan

LADDER_PNG = "ladder.png"
INFINITE = "inf"  # how report.json writes an unreachable multiplier (JSON has no infinity)
EXTEND = 10.0  # the plot's fits run on to this many times the largest rung's compute
GAP_WORDS = {
    HELPS: "lower",
    HURTS: "higher",
    WITHIN_NOISE: "within noise",
}  # a contender's loss against the reference's


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


def _json_number(value: float) -> float | str:
    return INFINITE if math.isinf(value) else float(value)


def ladder_statistics(
    rows: Sequence[dict[str, Any]],
    contenders: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    outlook: bool = True,
) -> dict[str, Any]:
    """The ladder's statistics from its rung rows (plain dicts with ``contender``, ``rung`` (1 the smallest),
    ``flops`` and ``val_losses``): per contender its fit, forecast check, and against the reference (the first
    contender) its multiplier or the reason it is withheld, with the gap at every rung (the gaps of every
    contender at every rung one family, Holm) and any reversal of the order with size. With `outlook`, a
    withheld multiplier also gets how many more rungs or seeds would identify it (simulated: see
    `cleangpt_core.experiments.ladder_outlook.identification_outlook`). The calibration harness calls this with
    simulated rows, the report with the runs'."""
    from threadpoolctl import threadpool_limits

    reference = contenders[0]
    at = float(max(row["flops"] for row in rows if row["contender"] == reference))
    points = {contender: _points(rows, contender) for contender in contenders}
    entries: dict[str, dict[str, Any]] = {}
    # tiny least-squares problems: BLAS threads only contend (on a busy 2-core machine 5-25× slower)
    with threadpool_limits(1, user_api="blas"):
        for contender in contenders:
            try:
                fit = fit_points(points[contender])
            except ConfigError:  # rungs without a finite loss (every tuning trial failed, a run diverged)
                entries[contender] = {"fit": None, "forecast": None, "multiplier": None, "gaps": []}
                continue
            entries[contender] = {
                "fit": _law(fit),
                "forecast": forecast_check(points[contender], resamples=resamples),
                "multiplier": None,
                "gaps": [],
            }
        for contender in contenders[1:]:
            if entries[contender]["fit"] is not None and entries[reference]["fit"] is not None:
                forecasts = (entries[reference]["forecast"], entries[contender]["forecast"])
                entries[contender]["multiplier"] = _multiplier(
                    points, (reference, contender), forecasts, at, resamples, outlook
                )
            if points[reference] and points[contender]:
                entries[contender]["gaps"] = [
                    {"rung": gap.rung + 1, "compute": gap.compute, "difference": gap.difference}
                    for gap in matched_gaps(points[reference], points[contender])
                ]
    _judge_gaps([entries[contender]["gaps"] for contender in contenders[1:]])
    for contender in contenders[1:]:
        entries[contender]["reversal"] = reversal(contender, reference, entries[contender]["gaps"])
    return {"reference": reference, "multiplier_at_flops": at, "contenders": entries}


def _multiplier(
    points: dict[str, list[Point]],
    names: tuple[str, str],
    forecasts: tuple[dict[str, Any] | None, dict[str, Any] | None],
    at: float,
    resamples: int,
    outlook: bool,
) -> dict[str, Any]:
    reference, contender = names
    found = multiplier_estimate(
        points[reference], points[contender], at, names=names, forecasts=forecasts, resamples=resamples
    )
    if found.withheld is None:
        return {
            "value": _json_number(found.value),
            "low": _json_number(found.low),
            "high": _json_number(found.high),
            "withheld": None,
            "rule": None,
        }
    entry: dict[str, Any] = {
        "value": None,
        "low": None,
        "high": None,
        "withheld": found.withheld.reason,
        "rule": found.withheld.rule,
    }
    if outlook:
        entry["outlook"] = identification_outlook(points[reference], points[contender], at)
    return entry


def _judge_gaps(families: Sequence[list[dict[str, Any]]]) -> None:
    """Fill in each gap's JSON figures, its Holm-adjusted p and verdict (every gap of the ladder one family)."""
    gaps = [gap for found in families for gap in found]
    for gap, (p, verdict) in zip(gaps, family([gap["difference"] for gap in gaps]), strict=True):
        difference = gap.pop("difference")
        gap.update(
            {
                "gap": difference.delta,
                "low": difference.low,
                "high": difference.high,
                "p": difference.p,
                "p_holm": p,
                "verdict": GAP_WORDS[verdict],
            }
        )


def reversal(contender: str, reference: str, gaps: Sequence[dict[str, Any]]) -> str | None:
    """One sentence where the family's verdicts put `contender` below the reference at some rungs and above it
    at others (the order reverses with size), else None."""
    lower = [gap for gap in gaps if gap["verdict"] == GAP_WORDS[HELPS]]
    higher = [gap for gap in gaps if gap["verdict"] == GAP_WORDS[HURTS]]
    if not lower or not higher:
        return None

    def where(found: Sequence[dict[str, Any]]) -> str:
        return ", ".join(
            f"rung {gap['rung']} ({gap['gap']:+.3f} [{gap['low']:+.3f}, {gap['high']:+.3f}])" for gap in found
        )

    return (
        f"The order reverses with size: {contender}'s loss is below {reference}'s at {where(lower)} and above it "
        f"at {where(higher)}."
    )


def ladder_summary(
    plan: ComparisonPlan, results: Sequence[dict[str, Any]], *, resamples: int = RESAMPLES, outlook: bool = True
) -> dict[str, Any]:
    """What report.json records of a ladder: the rungs, and `ladder_statistics` of them."""
    ladder = plan.ladder
    assert ladder is not None
    rows = rung_rows(plan, results)
    statistics_found = ladder_statistics(rows, ladder.contenders, resamples=resamples, outlook=outlook)
    return {
        "keys": list(ladder.keys),
        "tokens_per_param": ladder.tokens_per_param,
        "flops_formula": FLOPS_FORMULA,
        "parameters_counted": N_COUNTS,
        "fit_method": FIT_METHOD,
        "reference": statistics_found["reference"],
        "multiplier_at_flops": statistics_found["multiplier_at_flops"],
        "bootstrap": {"resamples": resamples, "confidence": CONFIDENCE, "method": INTERVAL_METHOD},
        "gap_method": GAP_METHOD,
        "family_correction": CORRECTION,
        "rungs": rows,
        "contenders": statistics_found["contenders"],
    }


def _number(value: float | str | None, spec: str) -> str:
    return "n/a" if value is None else "∞" if value == INFINITE else format(value, spec)


def plot_ladder(summary: dict[str, Any], path: Path) -> None:
    """`ladder_figure`, saved to `path`."""
    save_figure(ladder_figure(summary), path)


def ladder_figure(summary: dict[str, Any]) -> Figure:
    """Loss against compute on log-log axes: each seed's final validation loss, and each contender's fit from
    its smallest rung to `EXTEND` times its largest; the axes labelled with plain numbers."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

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
    # losses span less than a decade, where matplotlib labels them "2.8×10⁰": plain numbers read at a glance
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0e}"))  # 1e+12, not 10^12
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(f"training compute C (FLOPs; fits extended to {EXTEND:g}× the largest rung)")
    axes.set_ylabel("final validation loss (nats/token)")
    axes.grid(alpha=0.3, which="both")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    return figure


def _forecast_cell(forecast: dict[str, Any] | None) -> str:
    if forecast is None:
        return "n/a (needs 4 rungs)"
    cell = f"{forecast['predicted']:.4f} / {forecast['measured']:.4f} / {forecast['error']:+.4f}"
    if forecast.get("tolerance") is None:
        return f"{cell} (one seed a rung: no tolerance)"
    return f"{cell} ({'within' if forecast['within'] else '**outside**'} ±{forecast['tolerance']:.4f})"


def _multiplier_cell(multiplier: dict[str, Any] | None) -> str:
    if multiplier is None:
        return "n/a"
    if multiplier.get("withheld"):
        return "withheld (below)"
    value = _number(multiplier["value"], ".3g") + "×"
    return f"{value} [{_number(multiplier['low'], '.3g')}, {_number(multiplier['high'], '.3g')}]"


def _outlook_words(outlook: dict[str, Any]) -> str:
    """'In ladders simulated from the two fits ..., the multiplier would be identified with 1 more rung in 45 %,
    ...; 2 more rungs (3.1× this ladder's training compute) would reach 80 %.'"""
    found = ", ".join(f"{option['change']} in {100 * option['identified']:.0f} %" for option in outlook["options"])
    verdict = outlook["enough"] or (
        f"none reaches {100 * outlook['target']:.0f} %: simulated from these fits, more of this ladder does not "
        "identify it"
    )
    return (
        f"In ladders simulated from the two fits and seed noise ({outlook['studies']} per option, the calibration "
        f"harness), the multiplier would be identified with {found}; {verdict}."
    )


def _gap_words(gap: dict[str, Any] | None) -> str:
    if gap is None:
        return "the two contenders' measured ranges of compute do not overlap: no gap at matched compute"
    interval = "" if gap["low"] is None else f" [{gap['low']:+.4f}, {gap['high']:+.4f}]"
    return (
        f"at {gap['compute']:.3e} FLOPs, the largest compute both measured, the gap is {gap['gap']:+.4f}{interval} nats"
    )


def ladder_section(summary: dict[str, Any], out_dir: Path, tuning: dict[str, Any] | None) -> list[str]:
    """The Markdown lines of the ladder section (and its plot, written into `out_dir`); `tuning` is the tuning's
    summary where the contenders were tuned (what its transfer checks found is said where the rungs are)."""
    plot_ladder(summary, out_dir / LADDER_PNG)
    budget = (
        f"{summary['tokens_per_param']:g} tokens per non-embedding parameter N (in whole optimizer steps)"
        if summary["tokens_per_param"] is not None
        else "the same --max-tokens"
    )
    reference, at = summary["reference"], summary["multiplier_at_flops"]
    lines = [
        "## Ladder",
        "",
        f"Every contender trained at every rung ({', '.join(f'`{key}`' for key in summary['keys'])}), each rung "
        f"to {budget}. Training compute: {FLOPS_FORMULA}, with D the training tokens; {N_COUNTS}.",
        "",
    ]
    if tuning is not None:
        lines += [f"Tuned at each contender's smallest rungs, then transferred: {transfer_sentence(tuning)}", ""]
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
        f"Per contender, L(C) = E + A·C^(−α) through every seed's final validation loss, by {FIT_METHOD}. "
        "Forecast: the fit on every rung but the largest, predicting the largest (predicted − measured mean, "
        "nats; it needs four rungs), against the tolerance the seed noise allows (the 95th percentile of "
        "forecast errors over ladders drawn around the fit with the measured noise). Compute multiplier of X: "
        f"the compute {reference} needs (by its fit) to reach X's fitted loss at C* = {at:.3e} FLOPs "
        f"({reference}'s largest rung), divided by C*; above 1, X is worth that many times the compute. It is "
        "given only where the data identify it: four rungs or more and two seeds at some rungs, both forecasts "
        f"within tolerance, neither fit's E at its bound 0 (in the fit or in more than {100 * FLOOR_SHARE:.0f} % "
        f"of the bootstrap's refits), and the compute it implies within {RANGE_FACTOR:g}× of {reference}'s "
        "measured range; otherwise the reason is said below. Interval: 95 %, "
        f"{summary['bootstrap']['method']}; {coverage_note('multiplier')}.",
        "",
        f"| contender | E | A | α | forecast of its largest rung (predicted / measured / error) | compute "
        f"multiplier vs {reference} |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    withheld = []
    for contender, entry in summary["contenders"].items():
        fit = entry["fit"]
        if fit is None:
            lines.append(f"| {contender} | no fit: fewer than 3 rungs with a finite loss | | | n/a | n/a |")
            continue
        multiplier = "1 (reference)" if contender == reference else _multiplier_cell(entry["multiplier"])
        lines.append(
            f"| {contender} | {fit['E']:.4f} | {fit['A']:.4g} | {fit['alpha']:.4f} | "
            f"{_forecast_cell(entry['forecast'])} | {multiplier} |"
        )
        if entry["multiplier"] is not None and entry["multiplier"]["withheld"]:
            withheld.append((contender, entry))
    lines.append("")
    for contender, entry in withheld:
        gap = entry["gaps"][-1] if entry["gaps"] else None
        line = (
            f"- {contender}'s multiplier is withheld. Why: {entry['multiplier']['withheld']}. What the rungs "
            f"support: {_gap_words(gap)} ({contender} − {reference})."
        )
        if entry["multiplier"].get("outlook"):
            line += " " + _outlook_words(entry["multiplier"]["outlook"])
        lines.append(line)
    if withheld:
        lines.append("")
    lines += _gap_lines(summary, reference)
    lines += ["", f"![Loss against compute, with the fits]({LADDER_PNG})", ""]
    return lines


def _gap_lines(summary: dict[str, Any], reference: str) -> list[str]:
    """The table of every contender's gap to the reference at every rung, and any reversal."""
    rows = [(c, gap) for c, entry in summary["contenders"].items() if c != reference for gap in entry["gaps"]]
    if not rows:
        return []
    lines = [
        f"Gap to {reference} at every rung: {summary['gap_method']}; 95 % interval, "
        f"{coverage_note('gap')}. Verdicts over the ladder's {len(rows)} gaps as one family, by "
        f"{summary['family_correction']} ({coverage_note('gap_family')}).",
        "",
        f"| contender | rung | at FLOPs | loss − {reference}'s | 95 % interval | p (Holm) | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for contender, gap in rows:
        interval = "n/a" if gap["low"] is None else f"[{gap['low']:+.4f}, {gap['high']:+.4f}]"
        p = "n/a" if gap["p_holm"] is None else f"{gap['p_holm']:.3g}"
        lines.append(
            f"| {contender} | {gap['rung']} | {gap['compute']:.3e} | {gap['gap']:+.4f} | {interval} | {p} "
            f"| {gap['verdict']} |"
        )
    reversals = [entry["reversal"] for entry in summary["contenders"].values() if entry.get("reversal")]
    return [*lines, "", *reversals] if reversals else lines
