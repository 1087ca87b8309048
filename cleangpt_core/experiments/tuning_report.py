"""The report's tuning section: each contender's best setting, the basin around it, the failed trials, and the plot
of tuning loss against each tuned setting (one curve per contender; a log axis where the range was ``:log``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cleangpt_core.experiments.report import save_figure
from cleangpt_core.experiments.tuning import BASIN, TUNING_PNG


def _value(value: float | int) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_tuning(summary: dict[str, Any], path: Path) -> None:
    """One panel per tuned key: each contender's trial losses against that key's setting, joined in order."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = summary["keys"]
    figure = Figure(figsize=(6.5 * len(keys), 4.5), dpi=100)
    FigureCanvasAgg(figure)
    for index, key in enumerate(keys, start=1):
        axes = figure.add_subplot(1, len(keys), index)
        for label, contender in summary["contenders"].items():
            points = sorted((t["params"][key["key"]], t["loss"]) for t in contender["trials"] if t["loss"] is not None)
            if points:
                xs, ys = zip(*points, strict=True)
                (line,) = axes.plot(xs, ys, "o-", markersize=4, label=label)
                best = contender["best"]
                axes.plot([best["params"][key["key"]]], [best["loss"]], "*", markersize=12, color=line.get_color())
        if key["log"]:
            axes.set_xscale("log")
        axes.set_xlabel(key["key"] + (" (log scale)" if key["log"] else ""))
        axes.set_ylabel("tuning validation loss (mean over tuning seeds)")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    save_figure(figure, path)


def tuning_section(summary: dict[str, Any], out_dir: Path) -> list[str]:
    """The Markdown lines of the tuning section (and its plot, written into `out_dir`)."""
    plot_tuning(summary, out_dir / TUNING_PNG)
    keys = [key["key"] for key in summary["keys"]]
    seeds = "; ".join(f"{label} {', '.join(map(str, s))}" for label, s in summary["tune_seeds"].items())
    how = "a grid of evenly spaced settings" if summary["sampler"] == "grid" else "Optuna's TPE sampler"
    lines = [
        "## Tuning",
        "",
        f"Each contender had its own Optuna study of {summary['trials']} trials ({how}) over "
        f"{', '.join(f'`{key}`' for key in keys)}; a trial trained the contender at its setting on the tuning seeds "
        f"({seeds}) and scored the mean of their final validation losses. The runs above trained each contender's "
        f"best setting on fresh seeds. The basin is the range of each setting among the trials within {BASIN} of "
        "the best loss (its width says how sharp the optimum is at this resolution).",
        "",
        f"| contender | best setting | best tuning loss | basin (within {BASIN}) | trials completed | trials failed |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    failures = []
    for label, contender in summary["contenders"].items():
        best, trials = contender["best"], contender["trials"]
        failed = [t for t in trials if t["loss"] is None]
        failures += [f"- {label} {t['slot']} ({_setting(t['params'])}): {t['failure']}" for t in failed]
        if best is None:
            lines.append(f"| {label} | every trial failed | n/a | n/a | 0 | {len(failed)} |")
            continue
        width = "; ".join(
            f"{key} {_value(low)} – {_value(high)}" for key, (low, high) in (contender["basin"] or {}).items()
        )
        lines.append(
            f"| {label} | {_setting(best['params'])} | {best['loss']:.4f} | {width} | {len(trials) - len(failed)} "
            f"| {len(failed)} |"
        )
    lines.append("")
    if failures:
        lines += ["Failed trials, with their reasons:", "", *failures, ""]
    lines += [f"![Tuning loss against each setting]({TUNING_PNG})", ""]
    return lines


def _setting(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_value(value)}" for key, value in params.items())
