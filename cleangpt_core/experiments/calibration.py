"""The calibration harness: simulated studies of known truth, fed through the functions that write the reports.

A report's interval is only worth its "95 %" if it covers the truth in 95 % of studies like the reader's. This
module simulates such studies and hands them to the same code a report is written by:

- *Ladders* (`LadderDesign`): two contenders, the reference on ``L(C) = E + A·C^(−α)`` (E = 1.5, α = 0.15,
  loss 3.2 at the smallest rung, rungs evenly spaced in log compute over 225×) and the other on the same law at
  `multiplier` times the compute, so its true compute multiplier is that at every compute. The contender's rungs
  sit within ±10 % of the reference's compute (another architecture has another N at the same width). Each
  seed's loss is the law plus Gaussian noise of sd `noise` nats, or, heteroscedastic, sd 0.01 at the largest
  rung growing to 0.04 at the smallest. Through `ladder_report.ladder_statistics`: the fits, forecast checks,
  multiplier or its reason, and the gaps at every rung with their family's verdicts.
- *Ablations* (`AblationDesign`): a base and levers of known effect (nats) over seeds; seed *s* shares a part of
  its noise between the base and every lever (`correlation`, the pairing that the same initial weights and data
  order make), and the levers keep the base's shapes or not. Through `ablation.ablation_rows`.
- *Comparisons* (`ComparisonDesign`): contenders of known mean loss. Through `report.pair_verdicts`, and the
  seed-spread rule the report used before (`summary.spread_verdicts`) for comparison.

A study's outcomes are counts (intervals given and covering, verdicts right and wrong, figures withheld by
rule); `run_cell` sums a design's studies, each drawn from a numpy Generator seeded by the cell, so a cell's
figures are the same on every machine. `benchmarks/bench_calibration.py` runs the grid and writes
`benchmarks/results/calibration.md` and ``calibration.json``, whose headline figures the reports quote
(`cleangpt_core.experiments.calibration_notes`). `cleangpt_core.experiments.ladder_outlook` simulates around a
study's own fits in the same way to say how many more rungs or seeds would identify a withheld multiplier.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cleangpt_core.experiments.ablation import ablation_rows
from cleangpt_core.experiments.ladder_report import GAP_WORDS, ladder_statistics
from cleangpt_core.experiments.report import pair_verdicts
from cleangpt_core.experiments.scaling_fit import PowerLaw
from cleangpt_core.experiments.summary import spread_verdicts, summarize
from cleangpt_core.experiments.verdicts import HELPS, HURTS

# the simulated ladders' truth
FLOOR, ALPHA, SMALLEST_LOSS, SPAN = 1.5, 0.15, 3.2, 225.0
SMALLEST_COMPUTE = 1e10  # FLOPs of the smallest rung: only the ratios matter
JITTER = 0.1  # the contender's rung computes, within ±10 % of the reference's
HETEROSCEDASTIC = (0.01, 4.0)  # the sd at the largest rung, and how many times that at the smallest
BASE_LOSS = 1.9
REFERENCE, CONTENDER = "reference", "contender"


# -- ladders ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LadderDesign:
    """A simulated ladder: its rungs, seeds a rung, seed noise (sd, nats; None: heteroscedastic), the contender's
    true multiplier, and the share of the true compute a fit does not see at the smallest and largest rung
    (`unseen`: e.g. an output head left out of C; none by default)."""

    rungs: int
    seeds: int
    noise: float | None
    multiplier: float
    unseen: tuple[float, float] = (0.0, 0.0)

    @property
    def noise_words(self) -> str:
        low, factor = HETEROSCEDASTIC
        return f"{low:g} → {low * factor:g}" if self.noise is None else f"{self.noise:g}"


def true_laws(multiplier: float) -> tuple[PowerLaw, PowerLaw]:
    """The reference's law and the contender's (the same law at `multiplier` times the compute)."""
    scale = (SMALLEST_LOSS - FLOOR) * SMALLEST_COMPUTE**ALPHA
    return PowerLaw(FLOOR, scale, ALPHA), PowerLaw(FLOOR, scale * multiplier**-ALPHA, ALPHA)


def _noise(design: LadderDesign, compute: np.ndarray) -> np.ndarray:
    if design.noise is not None:
        return np.full(compute.shape, design.noise)
    low, factor = HETEROSCEDASTIC
    position = np.log(compute.max() / compute) / math.log(compute.max() / compute.min())  # 0 largest, 1 smallest
    return low * factor**position


def simulate_ladder(
    design: LadderDesign, generator: np.random.Generator
) -> tuple[list[dict[str, Any]], dict[str, PowerLaw], dict[str, np.ndarray]]:
    """A ladder's rung rows as the report's (``contender``, ``rung``, ``flops``, ``val_losses``), the true laws, and
    each contender's true compute per rung (``flops`` is what a fit sees: the true compute less `unseen`)."""
    laws = dict(zip((REFERENCE, CONTENDER), true_laws(design.multiplier), strict=True))
    reference = SMALLEST_COMPUTE * SPAN ** np.linspace(0, 1, design.rungs)
    computes = {REFERENCE: reference, CONTENDER: reference * np.exp(generator.uniform(-JITTER, JITTER, design.rungs))}
    unseen = np.linspace(*design.unseen, design.rungs)
    rows = []
    for name, compute in computes.items():
        losses = laws[name].loss(compute)[:, None] + _noise(design, compute)[:, None] * generator.normal(
            size=(design.rungs, design.seeds)
        )
        for rung in range(design.rungs):
            rows.append(
                {
                    "contender": name,
                    "rung": rung + 1,
                    "flops": float(compute[rung] * (1 - unseen[rung])),
                    "val_losses": [float(v) for v in losses[rung]],
                }
            )
    return rows, laws, computes


def ladder_study(design: LadderDesign, generator: np.random.Generator) -> Counter:
    """One simulated ladder through `ladder_statistics`: what it gave and whether that held."""
    rows, laws, computes = simulate_ladder(design, generator)
    found = ladder_statistics(rows, (REFERENCE, CONTENDER), outlook=False)
    entry = found["contenders"][CONTENDER]
    outcome: Counter = Counter(studies=1)
    multiplier = entry["multiplier"]
    if multiplier["withheld"] is None:
        outcome["multiplier given"] += 1
        high = math.inf if multiplier["high"] == "inf" else multiplier["high"]
        outcome["multiplier covered"] += multiplier["low"] <= design.multiplier <= high
        outcome["multiplier open"] += math.isinf(high)
    else:
        outcome[f"withheld: {multiplier['rule']}"] += 1
    for name in (REFERENCE, CONTENDER):
        forecast = found["contenders"][name]["forecast"]
        if forecast is not None and forecast["within"] is not None:
            outcome["forecasts"] += 1
            outcome["forecasts within"] += forecast["within"]
    # a gap's truth: the contender's true law at the true compute of the compute the fit saw, less the reference's
    seen = {name: np.array([row["flops"] for row in rows if row["contender"] == name]) for name in laws}
    wrong_here = 0
    for gap in entry["gaps"]:
        truth = _true_at(laws[CONTENDER], seen[CONTENDER], computes[CONTENDER], gap["compute"]) - _true_at(
            laws[REFERENCE], seen[REFERENCE], computes[REFERENCE], gap["compute"]
        )
        outcome["gaps"] += 1
        if gap["low"] is not None:
            outcome["gaps with interval"] += 1
            outcome["gaps covered"] += gap["low"] <= truth <= gap["high"]
        said = {GAP_WORDS[HELPS]: -1, GAP_WORDS[HURTS]: 1}.get(gap["verdict"], 0)
        sign = 0 if design.multiplier == 1 else (-1 if truth < 0 else 1)
        outcome["gap verdicts"] += said != 0
        outcome["gap verdicts right"] += said != 0 and said == sign
        wrong_here += said != 0 and said != sign
        outcome["gaps nonzero"] += sign != 0
    outcome["gap verdicts wrong"] += wrong_here
    outcome["studies with a wrong gap verdict"] += wrong_here > 0
    outcome["reversal said"] += entry["reversal"] is not None
    return outcome


def _true_at(law: PowerLaw, seen: np.ndarray, true: np.ndarray, compute: float) -> float:
    """The true loss at the compute a fit sees as `compute` (the unseen share interpolated in log compute)."""
    if np.allclose(seen, true):
        return float(law.loss(compute))
    return float(law.loss(math.exp(np.interp(math.log(compute), np.log(seen), np.log(true)))))


# -- ablations and comparisons ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AblationDesign:
    """A simulated ablation: seeds, seed noise (sd, nats), each lever's true effect on the loss (nats), the
    correlation of a seed's noise between the base and a lever, whether the levers keep the base's shapes, and an
    `outlier` (nats) added to the last seed of the first lever (a run that went wrong; 0: none)."""

    seeds: int
    noise: float
    effects: tuple[float, ...]
    correlation: float
    same_shapes: bool
    outlier: float = 0.0


def _seeded_losses(
    generator: np.random.Generator, seeds: int, noise: float, means: Sequence[float], correlation: float
) -> np.ndarray:
    """Losses (contender × seed): each mean plus noise, a `correlation` share of its variance shared per seed."""
    shared = generator.normal(size=seeds)
    own = generator.normal(size=(len(means), seeds))
    return np.asarray(means)[:, None] + noise * (math.sqrt(correlation) * shared + math.sqrt(1 - correlation) * own)


def _results(labels: Sequence[str], losses: np.ndarray, parameters: Sequence[int]) -> list[dict[str, Any]]:
    return [
        {
            "label": label,
            "seed": 1337 + seed,
            "val_loss": float(losses[index, seed]),
            "model_type": "Llama",
            "parameters": parameters[index],
            "all_parameters": parameters[index] + 64,
            "wall_s": 0.0,
            "tokens_per_step": 1,
        }
        for index, label in enumerate(labels)
        for seed in range(losses.shape[1])
    ]


def simulate_ablation(design: AblationDesign, generator: np.random.Generator) -> list[dict[str, Any]]:
    """The base's and every lever's results (label, seed, final validation loss, model type, parameter counts)."""
    means = [BASE_LOSS, *(BASE_LOSS + effect for effect in design.effects)]
    losses = _seeded_losses(generator, design.seeds, design.noise, means, design.correlation)
    losses[1, -1] += design.outlier
    levers = [f"lever-{index}" for index in range(1, len(design.effects) + 1)]
    parameters = [1000 if design.same_shapes else 1000 + index for index in range(len(means))]
    return _results(["base", *levers], losses, parameters)


def ablation_study(design: AblationDesign, generator: np.random.Generator) -> Counter:
    """One simulated ablation through `ablation_rows`: coverage, verdicts right and wrong, family-wise."""
    rows = ablation_rows(simulate_ablation(design, generator), "base")
    outcome: Counter = Counter(studies=1)
    wrong_here = 0
    for index, (row, effect) in enumerate(zip(rows, design.effects, strict=True)):
        truth = effect + (design.outlier / design.seeds if index == 0 else 0.0)  # the mean the runs were drawn at
        outcome["levers"] += 1
        if row["low"] is not None:
            outcome["intervals"] += 1
            outcome["intervals covered"] += row["low"] <= truth <= row["high"]
        said = {HELPS: -1, HURTS: 1}.get(row["verdict"], 0)
        sign = 0 if effect == 0 else (1 if effect > 0 else -1)
        outcome["null levers"] += sign == 0
        outcome["levers with an effect"] += sign != 0
        outcome["verdicts on null levers"] += said != 0 and sign == 0
        outcome["verdicts right"] += said != 0 and said == sign
        wrong_here += said != 0 and said != sign
        outcome["verdicts"] += said != 0
        outcome["verdicts resting on one seed"] += said != 0 and bool(row["resting_on"])
        outcome["levers with an outlying seed named"] += bool(row["outlying_seeds"])
        if index == 0 and design.outlier:
            outcome["outlier named"] += str(1337 + design.seeds - 1) in row["without_outliers"]
    outcome["verdicts wrong"] += wrong_here
    outcome["studies with a wrong verdict"] += wrong_here > 0
    return outcome


@dataclass(frozen=True)
class ComparisonDesign:
    """A simulated comparison: seeds, seed noise (sd, nats) and each contender's true mean loss offset (nats)."""

    seeds: int
    noise: float
    offsets: tuple[float, ...]


def comparison_study(design: ComparisonDesign, generator: np.random.Generator) -> Counter:
    """One simulated comparison through `pair_verdicts` (and the old seed-spread rule, for comparison)."""
    labels = [f"model-{index}" for index in range(len(design.offsets))]
    losses = _seeded_losses(generator, design.seeds, design.noise, [BASE_LOSS + o for o in design.offsets], 0.0)
    results = _results(labels, losses, [1000 + index for index in range(len(labels))])
    truth = dict(zip(labels, design.offsets, strict=True))
    outcome: Counter = Counter(studies=1)
    wrong_here = old_wrong_here = 0
    for verdict in pair_verdicts(results):
        outcome["pairs"] += 1
        real = truth[verdict["worse"]] - truth[verdict["better"]]  # > 0: the better one really is better
        outcome["pairs with a difference"] += real != 0
        if verdict["low"] is not None:
            outcome["intervals"] += 1
            outcome["intervals covered"] += verdict["low"] <= real <= verdict["high"]
        claimed = verdict["verdict"] == "better"
        outcome["claims"] += claimed
        outcome["claims right"] += claimed and real > 0
        wrong_here += claimed and real <= 0
    for old in spread_verdicts(summarize(results)):
        claimed = not old["within_spread"]
        outcome["old rule claims"] += claimed
        old_wrong_here += claimed and truth[old["worse"]] - truth[old["better"]] <= 0
    outcome["claims wrong"] += wrong_here
    outcome["studies with a wrong claim"] += wrong_here > 0
    outcome["studies with a wrong old-rule claim"] += old_wrong_here > 0
    return outcome


# -- running a cell ----------------------------------------------------------------------------------------------

STUDIES = {LadderDesign: ladder_study, AblationDesign: ablation_study, ComparisonDesign: comparison_study}


def run_cell(design: LadderDesign | AblationDesign | ComparisonDesign, studies: int, seed: int) -> Counter:
    """The summed outcomes of `studies` simulated studies of `design`, drawn from a Generator seeded by `seed`."""
    generator = np.random.default_rng(seed)
    study = STUDIES[type(design)]
    total: Counter = Counter()
    for _ in range(studies):
        total.update(study(design, generator))
    return Counter({key: int(value) for key, value in total.items()})  # numpy's bools counted: plain ints for JSON


def design_json(design: LadderDesign | AblationDesign | ComparisonDesign) -> dict[str, Any]:
    return {"kind": type(design).__name__, **asdict(design)}
