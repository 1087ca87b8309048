"""The report's tuning section: each contender's best setting, the basin around it, the failed trials, what the
tuning cannot say (a best setting on the end of what was tried, one tuning seed), on a ladder whether the best
setting moved between the tuned rungs, and the plot of tuning loss against each tuned setting (one curve per
contender; a log axis where the range was ``:log``; a best on an end marked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cleangpt_core.experiments.report import save_figure
from cleangpt_core.experiments.tuning import BASIN, TUNING_PNG
from cleangpt_core.experiments.tuning_spec import TunedKey, TuningSpec

EDGE_WORDS = {"low": "the lowest value tried", "high": "the highest value tried", "only": "the only value tried"}
EDGE_COLOR = "red"


def _value(value: float | int) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def edge_warnings(summary: dict[str, Any]) -> list[str]:
    """One line per contender and key whose best setting lies on an end of what was tried: there the optimum may
    lie beyond, so the best is a bound, not an optimum; each says whether the study could go on past it."""
    lines = []
    for label, contender in summary["contenders"].items():
        best = contender["best"]
        for key, edge in contender.get("edges", {}).items():
            where = "beyond it" if edge["side"] != "only" else "elsewhere"
            line = (
                f"- **{label}: the best {key}={_value(best['params'][key])} is {EDGE_WORDS[edge['side']]}**, so the "
                f"optimum may lie {where}: a better setting was not ruled out"
            )
            if edge["blocked"] is not None:
                line += f"; the study cannot go on past it ({edge['blocked']})."
            elif contender.get("extended", 0) > 0:
                line += f", even after {contender['extended']} extension round(s) (--tune-extend {summary['extend']})."
            else:
                line += "; `--tune-extend N` steps past it, up to N times, until the best is inside."
            lines.append(line)
    return lines


def tuning_figure(summary: dict[str, Any]) -> Any:
    """One panel per tuned key: each contender's trial losses against that key's setting, joined in order, its
    best a star; a best on an end of what was tried is a red star with a warning beside it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = summary["keys"]
    figure = Figure(figsize=(6.5 * len(keys), 4.5), dpi=100)
    FigureCanvasAgg(figure)
    for index, key in enumerate(keys, start=1):
        axes = figure.add_subplot(1, len(keys), index)
        for row, (label, contender) in enumerate(summary["contenders"].items()):
            points = sorted((t["params"][key["key"]], t["loss"]) for t in contender["trials"] if t["loss"] is not None)
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            (line,) = axes.plot(xs, ys, "o-", markersize=4, label=label)
            best = contender["best"]
            x, y = best["params"][key["key"]], best["loss"]
            edge = contender.get("edges", {}).get(key["key"])
            axes.plot([x], [y], "*", markersize=14 if edge else 12, color=EDGE_COLOR if edge else line.get_color())
            if edge:
                high = edge["side"] == "high"
                axes.annotate(
                    f"{label}: best on the edge ({EDGE_WORDS[edge['side']]})",
                    (x, y),
                    textcoords="offset points",
                    xytext=(-12 if high else 12, 14 + 14 * row),  # one line per contender, clear of the star
                    ha="right" if high else "left",
                    fontsize="small",
                    color=EDGE_COLOR,
                    arrowprops={"arrowstyle": "-", "color": EDGE_COLOR, "linewidth": 0.5},
                )
        if key["log"]:
            axes.set_xscale("log")
        axes.set_xlabel(key["key"] + (" (log scale)" if key["log"] else ""))
        axes.set_ylabel("tuning validation loss (mean over tuning seeds)")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    if any(contender.get("edges") for contender in summary["contenders"].values()):
        figure.suptitle("warning: a best setting on the edge of what was tried (red star)", color=EDGE_COLOR)
    return figure


def plot_tuning(summary: dict[str, Any], path: Path) -> None:
    """Write `tuning_figure` as a PNG."""
    save_figure(tuning_figure(summary), path)


def transfer_sentence(summary: dict[str, Any]) -> str:
    """What a tuned ladder's studies say about transfer, per contender: whether the best setting moved between the
    tuned rungs, and what that means for the rungs trained at a smaller rung's best (`Tuner.transfer`'s record).

    The ladder section states this where it says how its rungs were tuned: a claim that a setting transfers
    is made only where a study checked it.
    """
    parts = []
    for contender, entry in summary.get("transfer", {}).items():
        tuned, transferred = entry["tuned"], entry["transferred"]
        above = _rungs(transferred)
        if len(tuned) == 1:
            parts.append(
                f"{contender} was tuned at rung 1 only and {above} trained its best setting unchecked: whether that "
                "setting holds at larger sizes was not measured in this study (--tune-rungs 2 checks it at rung 2)"
            )
            continue
        for check in entry["checks"]:
            parts.append(f"{contender}: {_check_words(check, summary)}")
        if transferred:
            last = _rung(tuned[-1])
            moved = any(check["moved"] for check in entry["checks"])
            if moved:
                parts.append(
                    f"so {contender}'s {above}, trained at rung {last}'s best, likely trained off their own optimum "
                    "(further along the way it moved, if the trend goes on): their losses overstate what the contender "
                    "reaches tuned, and the fit and compute multipliers built on them carry that bias"
                )
            elif all(check["moved"] is False for check in entry["checks"]):
                parts.append(
                    f"{contender}'s {above} trained rung {last}'s best: the transfer is measured up to rung {last} "
                    "only, and assumed above it"
                )
            else:
                parts.append(f"{contender}'s {above} trained rung {last}'s best without a check that it transfers")
    return "; ".join(parts) + "." if parts else ""


def _check_words(check: dict[str, Any], summary: dict[str, Any]) -> str:
    """One transfer check in words, with what limits it: the trials' resolution, a best on the edge of what was
    tried (the optimum may have moved past it unseen), one tuning seed (a small gap may be noise)."""
    low, high = _rung(check["from"]), _rung(check["to"])
    if check["from_best"] is None or check["to_best"] is None:
        return f"the move of the optimum from rung {low} to rung {high} cannot be said (every trial of a rung failed)"
    if check["moved"] is None:
        return f"rung {low}'s best {_setting(check['from_best'])} was not scored at rung {high}: no check"
    if check["loss_at_from_best"] is None:
        return (
            f"the optimum moved: rung {low}'s best {_setting(check['from_best'])} failed at rung {high} (its best "
            f"there: {_setting(check['to_best'])})"
        )
    limits = []
    if summary["sampler"] == "grid":
        limits.append(f"at the grid's resolution ({_resolution(summary)})")
    if any(summary["contenders"].get(label, {}).get("edges") for label in (check["from"], check["to"])):
        limits.append("but a best lies on the edge of what was tried, so the optimum may have moved past it unseen")
    if len(summary["tune_seeds"].get(check["to"], [])) < 2:
        limits.append("one tuning seed: the seed-to-seed spread is not known, so a gap this small may be noise")
    caveat = f" ({'; '.join(limits)})" if limits else ""
    if check["gap"] == 0:
        return f"the best setting is the same at rungs {low} and {high}, {_setting(check['to_best'])}{caveat}"
    gap = f"{check['gap']:+.4f} nats against the best there, {_setting(check['to_best'])}"
    if check["moved"]:
        return (
            f"the optimum moved between rungs {low} and {high}: rung {low}'s best {_setting(check['from_best'])} "
            f"scores {gap} at rung {high}, more than {BASIN}{caveat}"
        )
    return (
        f"rung {low}'s best {_setting(check['from_best'])} scores {gap} at rung {high}, within {BASIN}: the same "
        f"optimum at this resolution{caveat}"
    )


def _resolution(summary: dict[str, Any]) -> str:
    """How far apart a grid's neighbouring settings are, per key."""
    keys = tuple(TunedKey(**key) for key in summary["keys"])
    points = TuningSpec(keys, summary["trials"]).points
    steps = []
    for key in keys:
        if key.log:
            steps.append(f"{key.key} a factor of {(key.high / key.low) ** (1 / (points - 1)):.3g} apart")
        else:
            steps.append(f"{key.key} {(key.high - key.low) / (points - 1):.3g} apart")
    return "; ".join(steps)


def _rung(label: str) -> int:
    return int(label.rpartition("rung-")[2])


def _rungs(labels: list[str]) -> str:
    numbers = [_rung(label) for label in labels]
    if not numbers:
        return "no larger rung"
    return f"rung {numbers[0]}" if len(numbers) == 1 else f"rungs {numbers[0]}–{numbers[-1]}"


def tuning_section(summary: dict[str, Any], out_dir: Path) -> list[str]:
    """The Markdown lines of the tuning section (and its plot, written into `out_dir`)."""
    plot_tuning(summary, out_dir / TUNING_PNG)
    keys = [key["key"] for key in summary["keys"]]
    seeds = "; ".join(f"{label} {', '.join(map(str, s))}" for label, s in summary["tune_seeds"].items())
    how = "a grid of evenly spaced settings" if summary["sampler"] == "grid" else "Optuna's TPE sampler"
    extended = f", stepping past a range's end up to {summary['extend']} times" if summary.get("extend") else ""
    lines = [
        "## Tuning",
        "",
        f"Each contender had its own Optuna study of {summary['trials']} trials ({how}{extended}) over "
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
        edge = " (on the edge)" if contender.get("edges") else ""
        lines.append(
            f"| {label} | {_setting(best['params'])}{edge} | {best['loss']:.4f} | {width} | "
            f"{len(trials) - len(failed)} | {len(failed)} |"
        )
    lines.append("")
    if warnings := edge_warnings(summary):
        lines += ["A best setting on the edge of what was tried:", "", *warnings, ""]
    single = [label for label, s in summary["tune_seeds"].items() if len(s) < 2]
    if single:
        lines += [
            f"One tuning seed ({', '.join(single)}): each trial's loss is one run, so the basin's width, and whether "
            "the best beats its neighbours by more than seed noise, are not known (--tune-seeds 2 or more measures "
            "them).",
            "",
        ]
    if transfer := transfer_sentence(summary):
        lines += [f"Transfer between the tuned rungs: {transfer}", ""]
    if failures:
        lines += ["Failed trials, with their reasons:", "", *failures, ""]
    lines += [f"![Tuning loss against each setting]({TUNING_PNG})", ""]
    return lines


def _setting(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_value(value)}" for key, value in params.items())
