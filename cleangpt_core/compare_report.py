"""The report of a comparison: a table, the validation-loss curves on one plot, as Markdown and JSON.

``report.json`` holds everything (the shared setting, every run's numbers and curve), ``report.md`` the table
a person reads (parameters, tokens/s, final training and validation loss, wall time) with the plot
``val_loss.png`` beneath it. Curves are drawn against tokens seen, the budget the runs share, so runs with
different batch shapes still line up.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cleangpt_core.atomic_write import write_text_atomic

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CURVES_PNG = "val_loss.png"
SAMPLE_CHARS = 400


def format_duration(seconds: float) -> str:
    """``42.3 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def best_run(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the lowest final validation loss (None when no run was evaluated)."""
    evaluated = [r for r in results if r.get("val_loss") is not None]
    return min(evaluated, key=lambda r: r["val_loss"]) if evaluated else None


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One row per run; the lowest validation loss in bold."""
    best = best_run(results)
    lines = [
        "| run | model | parameters | tokens/s | mean train loss | val loss | wall time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        val = _number(result.get("val_loss"), 4)
        if best is not None and result is best and len(results) > 1:
            val = f"**{val}**"
        parameters = f"{result['parameters']:,}" if result.get("parameters") is not None else "n/a"
        lines.append(
            f"| {result['label']} | {result['model_type']} | {parameters} | {_number(result.get('tokens_per_s'), 0)} "
            f"| {_number(result.get('train_loss'), 4)} | {val} | {format_duration(result['wall_s'])} |"
        )
    return "\n".join(lines)


def throughput_note(results: list[dict[str, Any]]) -> str:
    """How tokens/s was measured: each run alone, one after another, under the machine load it met."""
    loads = [
        f"{r['label']} {_number(r['load_average'][0], 2)} -> {_number(r['load_average'][1], 2)}"
        for r in results
        if r.get("load_average")
    ]
    seen = f" (1-minute load average before -> after each run: {'; '.join(loads)})" if loads else ""
    return (
        "tokens/s counts training steps only and was measured while each run trained alone, one after another, "
        f"not side by side, so other load on the machine during a run lowers its figure{seen}. For a speed "
        "comparison that load cannot bias, time the models' steps interleaved: "
        "`python benchmarks/bench_train_step.py`."
    )


def plot_validation_curves(results: list[dict[str, Any]], path: Path) -> None:
    """Every run's validation loss against tokens seen, on one axes (matplotlib's Agg canvas: no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for result in results:
        curve = result.get("val_curve") or []
        if curve:
            tokens = [step * result["tokens_per_step"] for step, _ in curve]
            axes.plot(tokens, [loss for _, loss in curve], "o-", markersize=3, label=result["label"])
    axes.set_xlabel("tokens seen")
    axes.set_ylabel("validation loss (nats/token)")
    axes.grid(alpha=0.3)
    if any(result.get("val_curve") for result in results):
        axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def write_report(out_dir: Path, results: list[dict[str, Any]], setting: dict[str, Any]) -> dict[str, Path]:
    """Write report.json, report.md and val_loss.png into `out_dir`; returns their paths.

    `setting` describes what the runs share: ``dataset``, ``seed`` and ``tokens_per_run``.
    """
    paths = {"json": out_dir / REPORT_JSON, "markdown": out_dir / REPORT_MD, "plot": out_dir / CURVES_PNG}
    plot_validation_curves(results, paths["plot"])
    write_text_atomic(paths["json"], json.dumps({**setting, "runs": results}, indent=2) + "\n")

    labels = [r["label"] for r in results]
    lines = [
        f"# Comparison: {' vs '.join(labels)}",
        "",
        f"Every run trained on the same data (`{setting['dataset']}`), seed ({setting['seed']}) and token budget "
        f"({setting['tokens_per_run']:,} tokens). Parameters exclude position embeddings; mean train loss is "
        "the mean over each run's last logging interval (trainer.log_interval steps); wall time includes "
        "evaluations and checkpoints.",
        "",
        throughput_note(results),
        "",
        markdown_table(results),
        "",
    ]
    best = best_run(results)
    if best is not None and len(results) > 1:
        others = ", ".join(f"{r['label']} {r['val_loss']:.4f}" for r in results if r is not best and r.get("val_loss"))
        lines += [f"Lowest validation loss: **{best['label']}** ({best['val_loss']:.4f}; {others}).", ""]
    lines += [f"![Validation loss of every run]({CURVES_PNG})", ""]
    samples = [(r["label"], r["sample"]) for r in results if r.get("sample")]
    if samples:
        lines += ["## Samples", ""]
        for label, sample in samples:
            lines += [f"{label}:", "", "```text", sample[:SAMPLE_CHARS].replace("```", "'''"), "```", ""]
    write_text_atomic(paths["markdown"], "\n".join(lines))
    return paths
