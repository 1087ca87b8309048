"""The report of a comparison: tables, the validation-loss curves on one plot, as Markdown and JSON.

``report.json`` holds everything (the shared setting, every run's numbers and curve, each contender's summary
over its seeds), ``report.md`` the tables a person reads (parameters, tokens/s, final training and validation
loss, wall time, and with ``--target-loss`` the tokens to reach it) with the plot ``val_loss.png`` beneath
them. With several seeds per contender the first table gives each contender's mean and standard deviation
over seeds (`cleangpt_core.experiments.summary`), a line per pair of contenders gives their gap with its 95 %
interval and a verdict, the pairs one family (`pair_verdicts`, `cleangpt_core.experiments.verdicts`), the plot
draws each contender's mean curve in its min-max band, and a second table lists every run. report.json keeps
the previous seed-spread rule's lines under ``spread`` for old readers; the calibrated ones are ``verdicts``.
Curves are drawn against tokens seen, the budget the runs share, so runs with different batch shapes still line
up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cleangpt_core.checkpoints.atomic_write import write_bytes_atomic, write_text_atomic
from cleangpt_core.experiments.calibration_notes import coverage_note, interval_notes
from cleangpt_core.experiments.summary import spread_verdicts, summarize, tokens_to_target
from cleangpt_core.experiments.verdicts import (
    CORRECTION,
    HELPS,
    HURTS,
    PAIRED,
    PAIRING,
    WITHIN_NOISE,
    Contrast,
    judge_family,
    judged_json,
    losses_by_seed,
    outlier_note,
    same_shapes,
    shapes,
)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CURVES_PNG = "val_loss.png"
SAMPLE_CHARS = 400
# verdicts on the worse contender's loss minus the better's, in a comparison's words
PAIR_WORDS = {HURTS: "better", WITHIN_NOISE: WITHIN_NOISE, HELPS: "the order reversed"}


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


def is_seeded(results: list[dict[str, Any]]) -> bool:
    """Whether some contender trained with several seeds (else the report is one row per contender)."""
    labels = [r["label"] for r in results]
    return len(set(labels)) < len(labels)


def _run_name(result: dict[str, Any], seeded: bool) -> str:
    return f"{result['label']} seed {result.get('seed')}" if seeded else result["label"]


def _target_cell(hit: dict[str, int] | None) -> str:
    return "not reached" if hit is None else f"{hit['tokens']:,} (step {hit['step']:,})"


def markdown_table(results: list[dict[str, Any]], target: float | None = None) -> str:
    """One row per run; the lowest validation loss in bold; with `target`, the tokens each run needed."""
    seeded = is_seeded(results)
    best = best_run(results)
    seed_head, seed_rule = (" seed |", " ---: |") if seeded else ("", "")
    target_head, target_rule = (f" tokens to ≤ {target:g} |", " ---: |") if target is not None else ("", "")
    lines = [
        f"| run |{seed_head} model | parameters | tokens/s | mean train loss | val loss |{target_head} wall time |",
        f"| --- |{seed_rule} --- | ---: | ---: | ---: | ---: |{target_rule} ---: |",
    ]
    for result in results:
        val = _number(result.get("val_loss"), 4)
        if best is not None and result is best and len(results) > 1:
            val = f"**{val}**"
        parameters = f"{result['parameters']:,}" if result.get("parameters") is not None else "n/a"
        seed = f" {result.get('seed')} |" if seeded else ""
        reached = f" {_target_cell(tokens_to_target(result, target))} |" if target is not None else ""
        lines.append(
            f"| {result['label']} |{seed} {result.get('model', result['model_type'])} | {parameters} "
            f"| {_number(result.get('tokens_per_s'), 0)} | {_number(result.get('train_loss'), 4)} | {val} |{reached} "
            f"{format_duration(result['wall_s'])} |"
        )
    return "\n".join(lines)


def _mean_std(summary: dict[str, Any]) -> str:
    mean, std = summary["val_loss_mean"], summary["val_loss_std"]
    return _number(mean, 4) if std is None else f"{_number(mean, 4)} ± {_number(std, 4)}"


def contender_table(summaries: list[dict[str, Any]], target: float | None = None) -> str:
    """One row per contender: its figures over seeds; the lowest mean validation loss in bold."""
    evaluated = [s for s in summaries if s["val_loss_mean"] is not None]
    best = min(evaluated, key=lambda s: s["val_loss_mean"]) if evaluated else None
    target_head = target_rule = ""
    if target is not None:
        target_head = f" tokens to ≤ {target:g} (mean) | steps to ≤ {target:g} (mean) | seeds reaching it |"
        target_rule = " ---: | ---: | ---: |"
    lines = [
        "| contender | model | parameters | all parameters | tokens per run | seeds | val loss (mean ± std) "
        "| val loss min – max |"
        f"{target_head} mean train loss | tokens/s | wall time (all seeds) |",
        f"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |{target_rule} ---: | ---: | ---: |",
    ]
    for summary in summaries:
        val = _mean_std(summary)
        if summary is best and len(summaries) > 1:
            val = f"**{val}**"
        parameters = " | ".join(
            f"{summary[key]:,}" if summary.get(key) is not None else "n/a" for key in ("parameters", "all_parameters")
        )
        reached = ""
        if target is not None:
            hit = summary["target"]
            reached = (
                f" {_number(hit['tokens_mean'], 0) if hit['reached'] else 'not reached'} "
                f"| {_number(hit['steps_mean'], 1) if hit['reached'] else 'not reached'} "
                f"| {hit['reached']}/{hit['runs']} |"
            )
        lines.append(
            f"| {summary['label']} | {summary['model']} | {parameters} | {_number(summary['tokens'], 0)} "
            f"| {len(summary['seeds'])} | {val} | {_number(summary['val_loss_min'], 4)} – "
            f"{_number(summary['val_loss_max'], 4)} |{reached} {_number(summary['train_loss_mean'], 4)} "
            f"| {_number(summary['tokens_per_s_mean'], 0)} | {format_duration(summary['wall_s_total'])} |"
        )
    return "\n".join(lines)


def pair_verdicts(
    results: Sequence[dict[str, Any]], comparable: Callable[[str, str], bool] | None = None
) -> list[dict[str, Any]]:
    """For each pair of contenders with two seeds or more each (or, with `comparable`, each pair it accepts), the
    gap between their mean final validation losses (the worse minus the better, so ≥ 0), its 95 % interval (paired
    over shared seeds where the two keep the same shapes, else Welch's: `cleangpt_core.experiments.verdicts`), and
    the verdict with the pairs as one family (Holm): *better* where the correction accepts the gap, else *within
    noise*; and any outlying seed, with the verdict without it."""
    losses, shape = losses_by_seed(results), shapes(results)
    means = {label: math.fsum(by_seed.values()) / len(by_seed) for label, by_seed in losses.items() if len(by_seed) > 1}
    ordered = sorted(means, key=means.__getitem__)
    pairs = [
        (better, worse)
        for index, better in enumerate(ordered)
        for worse in ordered[index + 1 :]
        if comparable is None or comparable(better, worse)
    ]
    contrasts = [Contrast(losses[w], losses[b], same_shapes(shape[w], shape[b])) for b, w in pairs]
    verdicts = []
    for (better, worse), judged in zip(pairs, judge_family(contrasts), strict=True):
        found = judged.difference
        verdicts.append(
            {
                "better": better,
                "worse": worse,
                "gap": found.delta,
                "low": found.low,
                "high": found.high,
                "p": found.p,
                "method": found.method,
                **judged_json(judged),
                "verdict": PAIR_WORDS[judged.verdict],
            }
        )
    return verdicts


def verdict_lines(verdicts: list[dict[str, Any]]) -> list[str]:
    """One sentence per pair of contenders: the gap, its interval, and whether the family's correction accepts it."""
    lines = []
    for verdict in verdicts:
        interval = "" if verdict["low"] is None else f" [{verdict['low']:.4f}, {verdict['high']:.4f}]"
        kind = "paired" if verdict["method"] == PAIRED else "Welch"
        p = "" if verdict["p_holm"] is None else f", Holm's p {verdict['p_holm']:.3g}"
        pair = (
            f"{verdict['better']} vs {verdict['worse']}: {verdict['better']}'s mean validation loss is lower by "
            f"{verdict['gap']:.4f}{interval} ({kind}{p})"
        )
        note = outlier_note(verdict, PAIR_WORDS)
        if verdict["verdict"] == WITHIN_NOISE:
            lines.append(f"- {pair}: within noise, these seeds do not tell the two apart{note}.")
        else:
            lines.append(f"- {pair}: {verdict['better']} is better{note}.")
    return lines


def _evaluation_cadence(results: list[dict[str, Any]]) -> str:
    """How often each contender's curve was measured, in tokens, and on how much of the validation data."""
    seen: dict[str, str] = {}
    for result in results:
        interval, batches = result.get("eval_interval"), result.get("eval_max_batches")
        every = "at the end only" if not interval else f"every {interval * result['tokens_per_step']:,} tokens"
        subset = "" if not interval or batches is None else f" (on its first {batches} validation batches)"
        seen.setdefault(result["label"], f"{result['label']} {every}{subset}")
    return "; ".join(seen.values())


def _final_evaluation(results: list[dict[str, Any]]) -> str:
    """How many validation tokens the final evaluations scored (runs saved before this was recorded: unknown)."""
    counts = sorted({result["val_tokens"] for result in results if result.get("val_tokens") is not None})
    if not counts:
        return "the final evaluation scores up to data.eval_tokens validation tokens"
    return f"the final evaluation scored {' or '.join(f'{count:,}' for count in counts)} validation tokens"


def target_note(results: list[dict[str, Any]], target: float) -> str:
    """How the tokens to the target were read off the curves."""
    return (
        f"Tokens to ≤ {target:g}: the tokens seen at a run's first evaluation whose validation loss was at or "
        "below the target, not interpolated, so exact to one evaluation interval (evaluated: "
        f"{_evaluation_cadence(results)}; {_final_evaluation(results)}). With several seeds, "
        "the mean is over the seeds that reached the target, and the table says how many did."
    )


def throughput_note(results: list[dict[str, Any]]) -> str:
    """How tokens/s was measured: each run alone, one after another, under the machine load it met."""
    seeded = is_seeded(results)
    loads = [
        f"{_run_name(r, seeded)} {_number(r['load_average'][0], 2)} -> {_number(r['load_average'][1], 2)}"
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


def plot_validation_curves(results: list[dict[str, Any]], path: Path, target: float | None = None) -> None:
    """Every contender's validation loss against tokens seen, on one axes (matplotlib's Agg canvas: no display).

    A contender with several seeds is drawn as its mean curve inside the band from the lowest to the highest
    seed's loss at each evaluation.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for summary in summarize(results):
        band = summary["val_curve_band"]
        if not band:
            continue
        tokens, mean, low, high = zip(*band, strict=True)
        seeds = len(summary["seeds"])
        label = summary["label"] if seeds == 1 else f"{summary['label']} (mean of {seeds} seeds, min-max band)"
        (line,) = axes.plot(tokens, mean, "o-", markersize=3, label=label)
        if seeds > 1:
            axes.fill_between(tokens, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if target is not None:
        axes.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    axes.set_xlabel("tokens seen")
    axes.set_ylabel("validation loss (nats/token)")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    save_figure(figure, path)


def save_figure(figure: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically: workers finishing together never leave a half-written plot."""
    import io

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())


def write_report(
    out_dir: Path,
    results: list[dict[str, Any]],
    setting: dict[str, Any],
    target: float | None = None,
    sections: Sequence[tuple[str, list[str], Any]] = (),
    comparable: Callable[[str, str], bool] | None = None,
) -> dict[str, Path]:
    """Write report.json, report.md and val_loss.png into `out_dir`; returns their paths.

    `setting` describes what the runs share: ``dataset``, ``seed`` (the first seed) and ``tokens_per_run``, or
    ``budget``, words for a budget that is not one number (a ladder's rungs each have their own).
    `target` is the validation loss whose tokens-to-reach the report gives. `sections` are further parts
    (an ablation's verdicts, the tuning), each its report.json key, its Markdown lines and its JSON value;
    they come after the verdicts on the pairs of contenders, given for every pair or, with `comparable`, for
    the pairs it accepts (a ladder's contenders at the same rung).
    """
    paths = {"json": out_dir / REPORT_JSON, "markdown": out_dir / REPORT_MD, "plot": out_dir / CURVES_PNG}
    summaries = summarize(results, target)
    # the seed-spread rule (a gap below the larger standard deviation) stays in report.json for its old readers;
    # the report's verdicts are `pair_verdicts`, calibrated
    spread = [v for v in spread_verdicts(summaries) if comparable is None or comparable(v["better"], v["worse"])]
    verdicts = pair_verdicts(results, comparable)
    seeded = is_seeded(results)
    budget = setting.get("budget") or f"{setting['tokens_per_run']:,} tokens"
    plot_validation_curves(results, paths["plot"], target)
    report = {**setting, "target_loss": target, "contenders": summaries, "spread": spread}
    report.update({"verdicts": verdicts, "verdict_correction": CORRECTION, "runs": results})
    report.update({key: value for key, _, value in sections})
    write_text_atomic(paths["json"], json.dumps(report, indent=2) + "\n")

    labels = [s["label"] for s in summaries]
    seeds = sorted({r.get("seed") for r in results if r.get("seed") is not None})
    if seeded:
        same = (
            f"Every contender trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}; a run's seed sets its "
            f"initialisation and its data order) on the same data (`{setting['dataset']}`) and token budget "
            f"({budget}, in whole steps of each contender's batch). A contender's val "
            "loss is the mean ± the standard deviation (n − 1) of its seeds' final validation losses ("
            f"{_final_evaluation(results)})."
        )
    else:
        same = (
            f"Every run trained on the same data (`{setting['dataset']}`), seed ({setting['seed']}) and token "
            f"budget ({budget})."
        )
    counted = " (all parameters include them, a tied embedding once)" if seeded else ""
    lines = [
        f"# Comparison: {' vs '.join(labels)}",
        "",
        f"{same} Parameters exclude position embeddings{counted}; mean train loss is the mean over each run's "
        "last logging interval (trainer.log_interval steps); wall time includes evaluations and checkpoints.",
        "",
        throughput_note(results),
        "",
        contender_table(summaries, target) if seeded else markdown_table(results, target),
        "",
    ]
    if target is not None:
        lines += [target_note(results, target), ""]
    if verdicts:
        calibrated = interval_notes([v["method"] for v in verdicts])
        lines += [
            f"Differences between contenders, with the 95 % interval of each gap ({PAIRING}; {calibrated}); "
            f"the {len(verdicts)} pairs are one family: a contender is *better* only "
            f"where {CORRECTION} accepts its gap ({coverage_note('pairs')}):",
            "",
            *verdict_lines(verdicts),
            "",
        ]
    for _, markdown, _ in sections:
        lines += markdown
    evaluated = [s for s in summaries if s["val_loss_mean"] is not None]
    if len(evaluated) > 1:
        best = min(evaluated, key=lambda s: s["val_loss_mean"])
        others = ", ".join(f"{s['label']} {s['val_loss_mean']:.4f}" for s in evaluated if s is not best)
        kind = "mean validation loss" if seeded else "validation loss"
        lines += [f"Lowest {kind}: **{best['label']}** ({best['val_loss_mean']:.4f}; {others}).", ""]
    lines += [f"![Validation loss of every run]({CURVES_PNG})", ""]
    if seeded:
        lines += ["## Every run", "", markdown_table(results, target), ""]
    # one sample per contender: its first seed's
    samples = {r["label"]: r["sample"] for r in reversed(results) if r.get("sample")}
    if samples:
        lines += ["## Samples", ""]
        for label in labels:
            if label in samples:
                text = samples[label][:SAMPLE_CHARS].replace("```", "'''")
                lines += [f"{label}:", "", "```text", text, "```", ""]
    write_text_atomic(paths["markdown"], "\n".join(lines))
    return paths
