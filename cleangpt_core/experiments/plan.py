"""A comparison's plan: every run it trains (its contender, seed and what rebuilds its config), the budget they
share, and the plan's JSON (``compare.json`` in the comparison's folder) and fingerprint.

A plan is built from the user's contenders by `cleangpt_core.experiments.planning`, saved before the first run
trains, and read back on ``--resume``: the plan, the run directories' checkpoints and their results are all that
resuming needs (`cleangpt_core.experiments.execution` trains what is left).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleangpt_core.checkpoints.atomic_write import write_text_atomic
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.config.experiment import ExperimentConfig, load_experiment_config
from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.ladder import LadderSpec
from cleangpt_core.experiments.tuning_spec import TuningSpec

PLAN_FILE = "compare.json"
RUNS_DIR = "runs"
# What every run of a comparison shares, or what its plan sets per run (the folder, the step budget): neither a
# contender's own overrides nor its tuning may change them (how a contender's data is fed may differ: planning)
SHARED_KEYS = ("data.", "seed", "output.", "trainer.max_steps", "device")

# 2: runs per contender and seed, and the target loss the report measures; a version-1 plan (one run per
# contender, no target) still loads, as a comparison with one seed. 3: the tuning and the ablation's base
# (a version-2 plan is a comparison with neither). 4: the ladder (a version-3 plan has none)
PLAN_VERSION = 4
READABLE_PLAN_VERSIONS = (1, 2, 3, 4)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison: its contender's label, its seed, and what rebuilds its experiment config."""

    label: str
    config_file: str | None
    overrides: tuple[str, ...]
    seed: int
    directory: str  # under runs/: the label, or label/seed-<seed> when the comparison has several seeds

    @property
    def title(self) -> str:
        """How progress lines name the run: its label, and its seed when the contender has several."""
        return self.label if self.directory == self.label else f"{self.label} seed {self.seed}"

    def load(self) -> ExperimentConfig:
        """The run's experiment config (the defaults, the config file, the overrides), as `cleangpt train`
        would resolve it."""
        return load_experiment_config(self.config_file, self.overrides)


def config_record(config: ExperimentConfig) -> dict[str, Any]:
    """A config as the JSON the plan stores (so a saved and a rebuilt one compare equal)."""
    return json.loads(config.model_dump_json())


@dataclass(frozen=True)
class ComparisonPlan:
    """Every run of a comparison, the budget they share, and each run's resolved config.

    `max_steps` is per contender label (every seed of a contender trains as long), `configs` per run
    directory. `target_loss` only changes the report, so two plans differing in it are the same comparison.
    With `tuning`, the runs are each contender's final runs, trained at its best tuned settings;
    `ablation_base` names the contender an ablation's levers are measured against. With `ladder`, every
    contender trains at every rung (`cleangpt_core.experiments.ladder`), each rung a label of its own.
    """

    runs: tuple[PlannedRun, ...]
    max_steps: dict[str, int]
    tokens_per_run: int
    configs: dict[str, dict[str, Any]]
    seeds: int = 1
    target_loss: float | None = field(default=None, compare=False)
    tuning: TuningSpec | None = None
    ablation_base: str | None = None
    ladder: LadderSpec | None = None

    @property
    def labels(self) -> list[str]:
        """The contenders, in plan order."""
        return list(dict.fromkeys(run.label for run in self.runs))

    def to_json(self) -> dict[str, Any]:
        """The plan as saved in ``compare.json``."""
        return {
            "version": PLAN_VERSION,
            "tokens_per_run": self.tokens_per_run,
            "seeds": self.seeds,
            "target_loss": self.target_loss,
            "tuning": self.tuning.to_json() if self.tuning is not None else None,
            "ablation_base": self.ablation_base,
            "ladder": self.ladder.to_json() if self.ladder is not None else None,
            "runs": [
                {
                    "label": run.label,
                    "config_file": run.config_file,
                    "overrides": list(run.overrides),
                    "seed": run.seed,
                    "directory": run.directory,
                    "max_steps": self.max_steps[run.label],
                    "config": self.configs[run.directory],
                }
                for run in self.runs
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> ComparisonPlan:
        """Read a plan saved by `to_json` (or by a cleanGPT that wrote version 1) from the file `where`."""
        version = data.get("version") if isinstance(data, dict) else None
        if version not in READABLE_PLAN_VERSIONS:
            raise ConfigError(
                f"{where} has format version {version!r}; this cleanGPT reads versions "
                f"{', '.join(map(str, READABLE_PLAN_VERSIONS))}: start the comparison again with another --out"
            )
        try:
            entries = data["runs"]
            runs = tuple(
                PlannedRun(
                    r["label"],
                    r["config_file"],
                    tuple(r["overrides"]),
                    r["seed"] if version >= 2 else r["config"]["seed"],
                    r["directory"] if version >= 2 else r["label"],
                )
                for r in entries
            )
            return cls(
                runs,
                {r["label"]: r["max_steps"] for r in entries},
                data["tokens_per_run"],
                {run.directory: r["config"] for run, r in zip(runs, entries, strict=True)},
                data.get("seeds", 1),
                data.get("target_loss"),
                TuningSpec.from_json(data["tuning"]) if data.get("tuning") else None,
                data.get("ablation_base"),
                LadderSpec.from_json(data["ladder"]) if data.get("ladder") else None,
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"{where} is damaged: its runs lack {error}; start the comparison again") from None

    def fingerprint(self) -> str:
        """What the comparison trains, as 12 hex digits: the same on every machine (run folders and where the
        tuning's studies are stored left out), so workers anywhere find the same Optuna studies."""
        configs = {}
        for directory, config in self.configs.items():
            config = json.loads(json.dumps(config))
            config.get("output", {}).pop("dir", None)
            configs[directory] = config
        tuning = self.tuning.to_json() if self.tuning is not None else {}
        tuning = {k: v for k, v in tuning.items() if k not in ("storage", "heartbeat_s")}
        # the options added since (no extension; one tuned rung) leave an earlier comparison's studies where they are
        if tuning.get("extend") == 0:
            del tuning["extend"]
        if tuning.get("rungs") in (None, 1):
            tuning.pop("rungs", None)
        what = {"tuning": tuning, "max_steps": self.max_steps, "configs": configs}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]

    def check_unchanged(self) -> None:
        """Fail if a run's config file changed since the comparison started: its runs would differ."""
        for run in self.runs:
            config = run.load()
            if config_record(config) != self.configs[run.directory]:
                raise ConfigError(
                    f"run {run.label!r}: its config ({run.config_file or 'the default recipe'}) changed since the "
                    "comparison started; restore it, or start a new comparison with another --out"
                )


def tokens_per_step(config: ExperimentConfig) -> int:
    """Input tokens one optimizer step consumes in a single process."""
    accumulation = int(config.trainer.options.get("gradient_accumulation_steps", 1))
    return config.data.batch_size * config.model.block_size * accumulation


def prepare_directory(out_dir: Path, plan: ComparisonPlan) -> bool:
    """Save the plan into `out_dir`, or check it is the plan saved there; True when resuming.

    Resuming may change the target loss (it only changes the report): the saved plan then records the new one.
    """
    path = out_dir / PLAN_FILE
    resuming = path.is_file()
    if resuming:
        data = read_json(path, ConfigError, "start the comparison again with another --out")
        if ComparisonPlan.from_json(data, path) != plan:
            raise ConfigError(
                f"{out_dir} holds a different comparison ({path}); continue it with `cleangpt compare --resume "
                f"{out_dir}` or choose another --out"
            )
        if data == plan.to_json():
            return True
    out_dir.mkdir(parents=True, exist_ok=True)  # (a version-1 plan is rewritten as this version's)
    write_text_atomic(path, json.dumps(plan.to_json(), indent=2) + "\n")
    return resuming


def load_plan(out_dir: Path) -> ComparisonPlan:
    """The plan saved in a comparison directory, checked against the config files it names."""
    path = out_dir / PLAN_FILE
    if not path.is_file():
        raise ConfigError(f"{out_dir} is not a comparison directory: it has no {PLAN_FILE}")
    plan = ComparisonPlan.from_json(read_json(path, ConfigError, "start the comparison again with another --out"), path)
    plan.check_unchanged()
    return plan
