"""Known answers: published findings the comparison machinery must reproduce, and how each is judged.

A finding is a comparison file (``cleangpt compare --comparison FILE``) with a ``known_answer`` section naming
the claim, the paper and how the report is read (`KnownAnswer`). `cleangpt known-answers` runs the file and
judges its report here, in one of three ways:

- ``lever``: the comparison's ``base`` against one contender, the *lever*, read from the report's ablation
  verdict (its interval over the final runs' seeds, each contender at its own tuned learning rate). The paper
  says the lever ``helps`` (lowers the loss) or ``hurts``; a lever whose every run diverged hurts.
- ``lr_sensitivity``: Wortsman et al. (2023)'s learning-rate sensitivity, from the tuning trials: per tuning
  seed, the mean over the swept rates of the final loss (capped at the loss of a uniform guess, ln V, where a
  run diverged or did worse) minus the best of them. The paper says the lever lowers it (``helps``).
- ``lr_transfer``: how far the best learning rate moves with width, from the tuning trials of one contender
  per width and parametrization: per tuning seed, the best rate at each width (the grid's best point, refined
  by a parabola through it and its neighbours in log2 lr), and the least-squares slope of log2 best rate
  against log2 width. TP5 says muP's slope is smaller in size than standard's (``helps``).

The second and third judge their per-seed figures with `cleangpt_core.experiments.verdicts`, as the ablation
verdicts are judged: a paired t-interval over the tuning seeds where both sides' models have the same shapes
(for the transfer slopes, always: both parametrizations share the width-64 runs of each seed), else Welch's.
A finding *agrees* when the interval excludes zero on the paper's side, *disagrees* when it excludes zero on
the other, and is *undecided* otherwise, with the number of seeds per side at which the measured difference,
were it the true one, would be told from zero (by Welch's interval).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from cleangpt_core.config.base import StrictModel, validate_config
from cleangpt_core.config.experiment import read_config_file
from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.verdicts import CONFIDENCE, Contrast, judge_family, same_shapes, shapes

KNOWN_FOLDER = Path(__file__).with_name("known")  # the published findings, shipped with the package
FINDING_SUFFIXES = (".yaml", ".yml", ".toml")
MAX_SEEDS_SHOWN = 1000  # beyond this many seeds per side a difference is reported as too small to decide

Outcome = Literal["agrees", "disagrees", "undecided", "not run"]


class KnownAnswer(StrictModel):
    """A comparison file's ``known_answer`` section: the published finding and how its report is judged."""

    finding: str = Field(description="the claim, in one sentence")
    paper: str = Field(description="who published it, when, and the title")
    test: Literal["lever", "lr_sensitivity", "lr_transfer"] = Field(description="how the report is judged")
    lever: str | None = Field(None, description="lever, lr_sensitivity: the contender judged against `base`")
    expect: Literal["helps", "hurts"] = Field(
        "helps", description="what the paper says the lever does (to the loss, or to the lr sensitivity)"
    )
    transfer: dict[Literal["standard", "mup"], dict[int, str]] | None = Field(
        None, description="lr_transfer: per parametrization, the contender trained at each width"
    )

    @model_validator(mode="after")
    def _test_has_its_fields(self) -> KnownAnswer:
        if self.test in ("lever", "lr_sensitivity") and self.lever is None:
            raise ValueError(f"test {self.test!r} needs lever: the contender judged against the comparison's base")
        if self.test == "lr_transfer":
            if self.transfer is None or set(self.transfer) != {"standard", "mup"}:
                raise ValueError("test 'lr_transfer' needs transfer: {standard: {WIDTH: CONTENDER, ...}, mup: {...}}")
            if any(len(widths) < 2 for widths in self.transfer.values()):
                raise ValueError("lr_transfer: give each parametrization two widths or more")
        return self


@dataclass(frozen=True)
class Finding:
    """One finding: its comparison file, the file's ``base`` contender and its `KnownAnswer`."""

    name: str
    path: Path
    answer: KnownAnswer
    base: str | None
    contenders: tuple[str, ...]

    def command(self, out_dir: Path) -> str:
        """The one command that runs it."""
        return f"cleangpt compare --comparison {self.path} --out {out_dir}"


@dataclass(frozen=True)
class Judgement:
    """What the tool said (`verdict`, with its interval) and whether that is the paper's answer."""

    verdict: str
    outcome: Outcome
    note: str = ""


def load_finding(path: Path) -> Finding:
    """The finding in a comparison file; a file without a valid ``known_answer`` section is one line naming it."""
    from cleangpt_core.experiments.comparison_file import ComparisonFile, comparison_options
    from cleangpt_core.experiments.planning import contender_labels

    spec = validate_config(ComparisonFile, read_config_file(path), f"comparison file {str(path)!r}")
    if spec.known_answer is None:
        raise ConfigError(f"comparison file {str(path)!r} has no known_answer section, so it is no finding")
    answer = validate_config(KnownAnswer, spec.known_answer, f"known_answer of {str(path)!r}")
    contenders = tuple(contender_labels(comparison_options(path, {})))
    finding = Finding(path.stem, path, answer, spec.base, contenders)
    _check_names(finding)
    return finding


def _check_names(finding: Finding) -> None:
    """The contenders the section names exist in the file, and a lever has a base to be judged against."""
    answer, where = finding.answer, f"known_answer of {str(finding.path)!r}"
    named = [answer.lever] if answer.lever is not None else []
    named += [label for widths in (answer.transfer or {}).values() for label in widths.values()]
    missing = [label for label in named if label not in finding.contenders]
    if missing:
        raise ConfigError(f"{where} names {missing[0]!r}, which is not a contender ({', '.join(finding.contenders)})")
    if answer.test in ("lever", "lr_sensitivity") and finding.base not in finding.contenders:
        raise ConfigError(f"{where}: test {answer.test!r} needs the file's base, the contender the lever is judged by")


def find_findings(folder: Path, names: Sequence[str] = ()) -> list[Finding]:
    """The findings of `folder` (every comparison file in it, by name), or those `names` ask for: a finding's
    name (its file's stem) in `folder`, or a path to a comparison file anywhere."""
    available = sorted(p for p in folder.glob("*") if p.suffix in FINDING_SUFFIXES) if folder.is_dir() else []
    if not names:
        if not available:
            raise ConfigError(
                f"no finding files in {str(folder)!r}; give --folder DIR (a folder of comparison files with a "
                "known_answer section) or a comparison file"
            )
        return [load_finding(path) for path in available]
    by_name = {path.stem: path for path in available}
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix in FINDING_SUFFIXES and path.is_file():
            chosen.append(load_finding(path))
        elif name in by_name:
            chosen.append(load_finding(by_name[name]))
        else:
            listed = ", ".join(by_name) or "none"
            raise ConfigError(f"no finding {name!r} in {str(folder)!r} (there: {listed}), and no such comparison file")
    return chosen


# -- judging a report --------------------------------------------------------------------------------------------


def judge(finding: Finding, report: dict[str, Any]) -> Judgement:
    """Read a finished comparison's report (report.json) as the finding's section says."""
    test = finding.answer.test
    if test == "lever":
        return judge_lever(finding, report)
    if test == "lr_sensitivity":
        return judge_lr_sensitivity(finding, report)
    return judge_lr_transfer(finding, report)


def judge_lever(finding: Finding, report: dict[str, Any]) -> Judgement:
    """The report's ablation verdict of the lever against the base."""
    lever, expect = finding.answer.lever, finding.answer.expect
    rows = {row["lever"]: row for row in (report.get("ablation") or {}).get("levers", [])}
    if lever not in rows:
        reasons = _failures(report, lever)
        if not reasons:
            raise ConfigError(f"the report of {finding.name!r} has no verdict for {lever!r}; is the comparison done?")
        verdict = f"{lever}: no run finished ({reasons[0]})"
        return Judgement(verdict, "agrees" if expect == "hurts" else "disagrees", "every run of the lever failed")
    row = rows[lever]
    losses = _final_losses(report)
    interval = "" if row.get("low") is None else f" [{row['low']:+.4f}, {row['high']:+.4f}]"
    verdict = f"{row['verdict']}: Δ loss {row['delta']:+.4f}{interval}, {row['seeds']} seeds"
    failed = _failures(report, lever)
    note = f"{len(failed)} of the lever's tuning trials or runs failed" if failed else ""
    outcome = _outcome(row["verdict"], expect)
    if outcome == "undecided":
        note = _join(note, _seeds_note(losses.get(lever, []), losses.get(finding.base, [])))
    return Judgement(verdict, outcome, note)


def judge_lr_sensitivity(finding: Finding, report: dict[str, Any]) -> Judgement:
    """Wortsman et al.'s lr sensitivity of lever and base over the tuning seeds, and the interval of its change."""
    tuning = _tuning(finding, report)
    cap = math.log(_vocab_size(report))
    lever = _sensitivities(tuning, str(finding.answer.lever), cap)
    base = _sensitivities(tuning, str(finding.base), cap)
    shape = shapes(report.get("runs", []))
    paired = finding.answer.lever in shape and same_shapes(shape[finding.answer.lever], shape.get(finding.base))
    result = _judged(lever, base, paired)
    verdict = (
        f"lr sensitivity {statistics.fmean(lever.values()):.3f} vs {statistics.fmean(base.values()):.3f}: "
        f"Δ {_interval(result)}, {len(lever)} seeds"
    )
    outcome = _outcome(result["verdict"], finding.answer.expect)
    note = _seeds_note(list(lever.values()), list(base.values())) if outcome == "undecided" else ""
    return Judgement(verdict, outcome, note)


def judge_lr_transfer(finding: Finding, report: dict[str, Any]) -> Judgement:
    """The slope of log2 best lr against log2 width per tuning seed, muP's size against standard's."""
    tuning = _tuning(finding, report)
    transfer = finding.answer.transfer or {}
    cap = math.log(_vocab_size(report))
    slopes: dict[str, dict[int, float]] = {}
    edges: list[str] = []
    for parametrization, widths in transfer.items():
        optima = {width: _optima(tuning, label, cap) for width, label in sorted(widths.items())}
        edges += [widths[width] for width, (_, on_edge) in optima.items() if on_edge]
        seeds = set.intersection(*(set(per_seed) for per_seed, _ in optima.values()))
        slopes[parametrization] = {
            seed: _slope([math.log2(width) for width in optima], [optima[width][0][seed] for width in optima])
            for seed in sorted(seeds)
        }
    mup = {seed: abs(slope) for seed, slope in slopes["mup"].items()}
    standard = {seed: abs(slope) for seed, slope in slopes["standard"].items()}
    result = _judged(mup, standard, paired=True)
    verdict = (
        f"slope of log2 best lr per doubling of width: standard {statistics.fmean(slopes['standard'].values()):+.2f}, "
        f"muP {statistics.fmean(slopes['mup'].values()):+.2f}; Δ size of slope {_interval(result)}, {len(mup)} seeds"
    )
    outcome = _outcome(result["verdict"], finding.answer.expect)
    note = ""
    if edges:
        outcome = "undecided"
        note = (
            f"the best rate lies on the tuning grid's edge for {', '.join(sorted(set(edges)))}, so the slope is not "
            "identified there: widen the tune range"
        )
    elif outcome == "undecided":
        note = _seeds_note(list(mup.values()), list(standard.values()))
    return Judgement(verdict, outcome, note)


def _judged(first: dict[int, float], second: dict[int, float], paired: bool) -> dict[str, Any]:
    """mean(first) − mean(second) over seeds, its interval and verdict (a family of one: no correction)."""
    [judged] = judge_family([Contrast(first, second, paired)])
    found = judged.difference
    return {"delta": found.delta, "low": found.low, "high": found.high, "verdict": judged.verdict}


def _outcome(verdict: str, expect: str) -> Outcome:
    if verdict == expect:
        return "agrees"
    return "disagrees" if verdict in ("helps", "hurts") else "undecided"


def _interval(result: dict[str, Any]) -> str:
    if result["low"] is None:
        return f"{result['delta']:+.3f} (no interval: one seed)"
    return f"{result['delta']:+.3f} [{result['low']:+.3f}, {result['high']:+.3f}]"


def _join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def _final_losses(report: dict[str, Any]) -> dict[str, list[float]]:
    losses: dict[str, list[float]] = {}
    for run in report.get("runs", []):
        if run.get("val_loss") is not None:
            losses.setdefault(run["label"], []).append(run["val_loss"])
    return losses


def _failures(report: dict[str, Any], label: str | None) -> list[str]:
    """Why `label`'s tuning trials failed (its final runs fail the same way), first reasons first."""
    contender = ((report.get("tuning") or {}).get("contenders") or {}).get(label) or {}
    return [trial["failure"] or "failed" for trial in contender.get("trials", []) if trial.get("loss") is None]


def _tuning(finding: Finding, report: dict[str, Any]) -> dict[str, Any]:
    tuning = report.get("tuning")
    if not tuning:
        raise ConfigError(f"finding {finding.name!r} reads tuning trials, but its comparison tunes nothing: add tune")
    return tuning


def _vocab_size(report: dict[str, Any]) -> int:
    """The vocabulary of the comparison's runs, from a finished run's saved model config."""
    from cleangpt_core.checkpoints.json_files import read_json

    for run in report.get("runs", []):
        if run.get("checkpoint"):
            config = read_json(Path(run["checkpoint"]) / "config.json", ConfigError, "train the comparison again")
            return int(config["vocab_size"])
    raise ConfigError("no run of the comparison finished, so its vocabulary (the loss cap ln V) is unknown")


def _loss_grid(tuning: dict[str, Any], label: str, cap: float) -> tuple[list[float], dict[int, list[float]]]:
    """The swept setting of `label`'s trials (the first tuned key: the learning rate) as log2, ascending, and per
    tuning seed the final loss at each, capped at `cap` (a failed trial, a diverged one among them, counts as
    `cap` for every seed)."""
    key = tuning["keys"][0]["key"]
    trials = sorted(tuning["contenders"][label]["trials"], key=lambda trial: trial["params"][key])
    rates = [math.log2(trial["params"][key]) for trial in trials]
    grid = {}
    for seed in tuning["tune_seeds"][label]:
        row = []
        for trial in trials:
            losses = {run["seed"]: run["val_loss"] for run in trial.get("runs", [])}
            loss = losses.get(seed) if trial.get("loss") is not None else None
            row.append(cap if loss is None or not math.isfinite(loss) else min(loss, cap))
        grid[seed] = row
    return rates, grid


def _sensitivities(tuning: dict[str, Any], label: str, cap: float) -> dict[int, float]:
    """Per tuning seed: the mean over the swept rates of the capped loss, minus the lowest of them."""
    _, grid = _loss_grid(tuning, label, cap)
    return {seed: statistics.fmean(row) - min(row) for seed, row in grid.items()}


def _optima(tuning: dict[str, Any], label: str, cap: float) -> tuple[dict[int, float], bool]:
    """Per tuning seed, the log2 of the best learning rate (refined by a parabola in log2 lr through the best
    grid point and its neighbours), and whether some seed's best point is an end of the grid."""
    rates, grid = _loss_grid(tuning, label, cap)
    optima, on_edge = {}, False
    for seed, row in grid.items():
        best = min(range(len(row)), key=row.__getitem__)
        if best in (0, len(row) - 1):
            on_edge = True
            optima[seed] = rates[best]
            continue
        (x0, x1, x2), (y0, y1, y2) = rates[best - 1 : best + 2], row[best - 1 : best + 2]
        # the parabola's derivative is linear: s1 at the midpoint m1 of x0 and x1, s2 at m2; its zero is the vertex
        s1, s2 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
        m1, m2 = (x0 + x1) / 2, (x1 + x2) / 2
        vertex = m1 - s1 * (m2 - m1) / (s2 - s1) if s2 > s1 else x1
        optima[seed] = min(max(vertex, x0), x2)
    return optima, on_edge


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ys against xs."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)


def seeds_to_decide(lever: Sequence[float], base: Sequence[float]) -> int | None:
    """The fewest seeds per side at which Welch's interval of the measured difference, with the measured
    spreads, would exclude zero (None above `MAX_SEEDS_SHOWN`, or when the difference or spreads are unknown)."""
    from scipy import stats

    if len(lever) < 2 or len(base) < 2:
        return None
    delta = abs(statistics.fmean(lever) - statistics.fmean(base))
    var_a, var_b = statistics.variance(lever), statistics.variance(base)
    if delta == 0 or var_a + var_b == 0:
        return None
    for n in range(max(len(lever), len(base)), MAX_SEEDS_SHOWN + 1):
        df = (n - 1) * (var_a + var_b) ** 2 / (var_a**2 + var_b**2)
        if stats.t.ppf(0.5 + CONFIDENCE / 2, df) * math.sqrt((var_a + var_b) / n) < delta:
            return n
    return None


def _seeds_note(lever: Sequence[float], base: Sequence[float]) -> str:
    needed = seeds_to_decide(lever, base)
    if needed is None:
        return f"the measured difference is too small to decide with {MAX_SEEDS_SHOWN} seeds per side"
    return f"about {needed} seeds per side would decide the measured difference, were it the true one"


# -- the table -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One finding's line of the table."""

    finding: Finding
    command: str
    judgement: Judgement
    wall_s: float


def table(rows: Sequence[Row]) -> str:
    """The Markdown table: finding | paper | command | verdict | agrees / disagrees / undecided | wall time."""
    from cleangpt_core.experiments.report import format_duration

    lines = [
        "| finding | paper | command | the tool's verdict (95 % interval) | outcome | wall time |",
        "| --- | --- | --- | --- | --- | ---: |",
    ]
    for row in rows:
        judgement = row.judgement
        outcome = judgement.outcome + (f" ({judgement.note})" if judgement.note else "")
        cells = [row.finding.answer.finding, row.finding.answer.paper, f"`{row.command}`", judgement.verdict, outcome]
        cells = [cell.replace("|", "\\|") for cell in cells]  # a bar in a cell would end it
        lines.append("| " + " | ".join([*cells, format_duration(row.wall_s)]) + " |")
    return "\n".join(lines)
