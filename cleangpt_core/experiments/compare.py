"""``cleangpt compare``: train several architectures or configs on the same data, seeds and token budget.

Each *contender* (an architecture, a config file, or a *variant*: a base with ``--set``-style overrides, named by
the user) trains once, or once per seed with ``seeds`` > 1: seed
*s*, *s*+1, ... from ``--seed`` or, without it, from the contenders' shared config seed. A run's seed sets
both the experiment seed (initialisation, dropout) and the trainer's (the data order), so the spread over
seeds is what a reader should expect from another seed. A comparison is a *plan* (``compare.json`` in its
directory: one entry per run, each the config file and ``--set`` overrides that rebuild its experiment
config) and one run directory per entry under ``runs/`` (``runs/<contender>``, or ``runs/<contender>/seed-<s>``
with several seeds), trained by the same experiment runner as ``cleangpt train``. A run that finished leaves
``result.json`` beside its checkpoints; the plan, checkpoints and results are all that resuming needs, so an
interrupted comparison started again trains only what is left: finished runs are kept, an unfinished run
continues from its latest checkpoint (exactly, as ``cleangpt train --resume`` does), and a run that never
reached a checkpoint starts over. The report (`cleangpt_core.experiments.report`) is written when every run has
finished.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt

from cleangpt_core.checkpoints.atomic_write import write_text_atomic
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.config.base import StrictModel, validate_config
from cleangpt_core.config.experiment import ExperimentConfig, load_experiment_config, read_config_file
from cleangpt_core.config.model import model_description
from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.ladder import LadderSpec, expand_contenders, parse_ladder, rung_tokens
from cleangpt_core.experiments.plan_limits import MAX_RUNS, MAX_SEEDS, SPLIT
from cleangpt_core.experiments.tuning_spec import TuningSpec

PLAN_FILE = "compare.json"
RUNS_DIR = "runs"
RESULT_FILE = "result.json"
CLOCK_FILE = "compare_clock.json"

# 2: runs per contender and seed, and the target loss the report measures; a version-1 plan (one run per
# contender, no target) still loads, as a comparison with one seed. 3: the tuning and the ablation's base
# (a version-2 plan is a comparison with neither). 4: the ladder (a version-3 plan has none)
PLAN_VERSION = 4
READABLE_PLAN_VERSIONS = (1, 2, 3, 4)
# How a run is fed may differ between contenders (the token budget evens out the batch shape); the text and
# its split, every other field of the data section, may not: the validation losses would not be comparable.
FEEDING_FIELDS = ("batch_size", "eval_batch_size", "windows", "num_workers")

Echo = Callable[[str], None]


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

    def check_unchanged(self) -> None:
        """Fail if a run's config file changed since the comparison started: its runs would differ."""
        for run in self.runs:
            config = run.load()
            if config_record(config) != self.configs[run.directory]:
                raise ConfigError(
                    f"run {run.label!r}: its config ({run.config_file or 'the default recipe'}) changed since the "
                    "comparison started; restore it, or start a new comparison with another --out"
                )


@dataclass(frozen=True)
class ContenderSpec:
    """A contender as written: a base (a config file, an architecture, both or neither) plus overrides.

    `name` is its label where the user chose one (a variant, a comparison file's contender); otherwise the
    label follows from the architecture or the config file's stem.
    """

    name: str | None = None
    config_file: str | None = None
    model: str | None = None
    overrides: tuple[str, ...] = ()


LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_label(name: str, what: str) -> str:
    """A user-chosen label names a run directory: letters, digits, ``_``, ``.`` and ``-`` only."""
    if not LABEL_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{what}: the name {name!r} must start with a letter or digit and hold only letters, digits, '_', '.' "
            "or '-' (it names a folder)"
        )
    return name


def parse_variant(text: str, option: str = "--variant") -> tuple[str, tuple[str, ...]]:
    """``NAME=KEY=VALUE[;KEY=VALUE...]`` as its name and its overrides, each ``KEY=VALUE`` as ``--set`` takes it."""
    name, separator, rest = text.partition("=")
    if not separator or not name.strip() or not rest.strip():
        raise ConfigError(f"{option} {text!r} must look like NAME=KEY=VALUE[;KEY=VALUE...]")
    overrides = tuple(part.strip() for part in rest.split(";"))
    for part in overrides:
        key, equals, _ = part.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{option} {text!r}: {part!r} must look like KEY=VALUE (e.g. model.n_layer=8)")
    return check_label(name.strip(), f"{option} {text!r}"), overrides


def _labels(names: Sequence[str]) -> list[str]:
    """Directory-safe labels, numbered where two runs would share one."""
    labels: list[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
        label, number = base, 2
        while label in labels:
            label, number = f"{base}-{number}", number + 1
        labels.append(label)
    return labels


def tokens_per_step(config: ExperimentConfig) -> int:
    """Input tokens one optimizer step consumes in a single process."""
    accumulation = int(config.trainer.options.get("gradient_accumulation_steps", 1))
    return config.data.batch_size * config.model.block_size * accumulation


class ContenderEntry(StrictModel):
    """One contender of a comparison file: a base (``config`` and/or ``model``) with overrides, under a name."""

    name: str | None = Field(None, description="its label (default: the model, or the config file's stem)")
    config: str | None = Field(None, description="an experiment config, relative to the comparison file")
    model: str | None = Field(None, description="an architecture (as --model)")
    overrides: list[str] = Field(default_factory=list, alias="set", description="overrides of this contender's runs")


class ComparisonFile(StrictModel):
    """A comparison written down: the options of ``cleangpt compare`` in a YAML or TOML file.

    Config files are found relative to the comparison file's folder, so the file and the configs it
    compares travel together; ``set`` holds ``section.field=value`` overrides for every run, as ``--set``.
    """

    models: list[str] = Field(default_factory=list, description="architectures to train (as --model)")
    configs: list[str] = Field(default_factory=list, description="experiment configs, relative to this file")
    contenders: list[ContenderEntry] = Field(
        default_factory=list, description="contenders with their own base and overrides (name, config, model, set)"
    )
    overrides: list[str] = Field(default_factory=list, alias="set", description="overrides of every run (as --set)")
    max_steps: PositiveInt | None = Field(None, description="optimizer steps per run")
    max_tokens: PositiveInt | None = Field(None, description="tokens per run, in whole steps of each batch")
    seed: int | None = Field(None, description="the first seed (default: the configs')")
    seeds: int = Field(1, description="runs per contender")
    target_loss: float | None = Field(None, description="the validation loss whose tokens-to-reach is reported")
    eval_tokens: int | None = Field(None, description="tokens between two evaluations of every run")
    ladder: list[str] = Field(default_factory=list, description="model sizes, as --ladder model.KEY=V1,V2,...")
    tokens_per_param: float | None = Field(None, description="a ladder rung's tokens per parameter (default 20)")


def comparison_options(path: Path, command_line: dict[str, Any], given: Sequence[str] = ()) -> dict[str, Any]:
    """`build_plan`'s options from a comparison file and the command line.

    The command line's ``--model``, ``--config`` and ``--set`` come after the file's; any other option
    named in `given` (set on the command line, not left at its default) replaces the file's value.
    """
    spec = validate_config(ComparisonFile, read_config_file(path), f"comparison file {str(path)!r}")
    written = spec.model_dump()
    written["config_files"] = [path.parent / config for config in written.pop("configs")]
    written["contenders"] = [
        ContenderSpec(
            entry.name,
            str(path.parent / entry.config) if entry.config is not None else None,
            entry.model,
            tuple(entry.overrides),
        )
        for entry in spec.contenders
    ]
    options = dict(command_line)
    for name, value in written.items():
        if isinstance(value, list):
            options[name] = [*value, *command_line.get(name, ())]
        elif name not in given:
            options[name] = value
    return options


def check_target_loss(target_loss: float | None) -> None:
    """A target validation loss must be a positive number (a cross-entropy in nats per token)."""
    if target_loss is not None and not (math.isfinite(target_loss) and target_loss > 0):
        raise ConfigError(f"--target-loss must be a positive validation loss, got {target_loss}")


def build_plan(
    out_dir: Path,
    *,
    models: Sequence[str] = (),
    config_files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    variants: Sequence[str] = (),
    contenders: Sequence[ContenderSpec] = (),
    max_steps: int | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    seeds: int = 1,
    eval_tokens: int | None = None,
    target_loss: float | None = None,
    tuning: TuningSpec | None = None,
    ablation_base: str | None = None,
    ladder: Sequence[str] = (),
    tokens_per_param: float | None = None,
) -> ComparisonPlan:
    """The runs of ``--model``/``--config``/``--variant`` options, checked to share data, seed and token budget.

    Several models with at most one config train each model under that config (or the default recipe);
    several configs without models train each config. Each variant (``NAME=KEY=VALUE[;KEY=VALUE...]``) is
    the one config (or the default recipe) with its overrides, and `contenders` (a comparison file's) name
    their own base. Each contender trains `seeds` times, with seeds
    `seed` (default: the contenders' config seed), `seed` + 1, ... `eval_tokens` evaluates every run about
    every that many tokens (rounded up to whole steps of its batch shape), so that runs with different batch
    shapes measure their curves, and the tokens they need to reach `target_loss`, at the same resolution.
    Every run's overrides end with its run directory and step budget. With `tuning`, each contender's settings
    are tuned first (`cleangpt_core.experiments.tuning`) and these runs train the best of them. With `ladder`
    (``--ladder`` options) every contender trains at every rung, to `tokens_per_param` tokens per parameter or
    `max_tokens` (`cleangpt_core.experiments.ladder`).
    """
    if models and len(config_files) > 1:
        raise ConfigError("give several --model with at most one --config, or several --config without --model")
    if variants and len(config_files) > 1:
        raise ConfigError("a --variant builds on the one --config (or the default recipe): give at most one --config")
    if max_steps is not None and max_tokens is not None:
        raise ConfigError("give --max-steps or --max-tokens, not both")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (runs per contender), got {seeds}")
    if seeds > MAX_SEEDS:
        raise ConfigError(
            f"--seeds must be at most {MAX_SEEDS:,} (runs per contender), got {seeds:,}; a plan is built and saved "
            f"whole before the first run, so {SPLIT}"
        )
    if eval_tokens is not None and eval_tokens < 1:
        raise ConfigError(f"--eval-tokens must be at least 1, got {eval_tokens}")
    if eval_tokens is not None and any(o.startswith("trainer.eval_interval=") for o in overrides):
        raise ConfigError("give --eval-tokens or --set trainer.eval_interval=..., not both")
    check_target_loss(target_loss)
    rungs = parse_ladder(ladder, tokens_per_param=tokens_per_param, max_tokens=max_tokens, max_steps=max_steps)
    labels, specs = _contenders(models, config_files, overrides, variants, contenders)
    if rungs is not None:
        rungs, labels, specs = expand_contenders(rungs, labels, specs)
    per_contender = seeds + (tuning.trials * tuning.tune_seeds if tuning is not None else 0)
    if len(specs) * per_contender > MAX_RUNS:  # before any contender's config is read
        tuned = f" + {tuning.trials:,} trials x {tuning.tune_seeds:,} tuning seeds" if tuning is not None else ""
        raise ConfigError(
            f"the comparison would train {len(specs) * per_contender:,} runs ({len(specs):,} contenders x ({seeds:,} "
            f"seeds{tuned})), more than the {MAX_RUNS:,} a plan may hold; it is built and saved whole before the "
            f"first run, so {SPLIT}"
        )
    if len(specs) * seeds < 2:  # one contender over several seeds measures its own spread
        raise ConfigError(
            "a comparison needs at least two runs: give two or more --model or --config, or --seeds 2 or more, or "
            "a --variant"
        )
    if ablation_base is not None and ablation_base not in labels:
        raise ConfigError(f"the ablation's base {ablation_base!r} is not one of the contenders ({', '.join(labels)})")

    # Each contender as its first seed would train it: the batch shape, the step budget, the seed.
    firsts: dict[str, ExperimentConfig] = {}
    for label, (config_file, contender_overrides) in zip(labels, specs, strict=True):
        config = _load_contender(label, config_file, contender_overrides)
        if seed is not None:
            seeding = [f"seed={seed}"]
            config = load_experiment_config(config_file, [*contender_overrides, *seeding])
        firsts[label] = config
    _check_same_setting(firsts)

    from cleangpt_core.trainers.optim_factory import check_schedule  # torch: only once a plan is built

    runs, steps, budgets, configs = [], {}, {}, {}
    for label, (config_file, contender_overrides) in zip(firsts, specs, strict=True):
        first = firsts[label]
        per_step = tokens_per_step(first)
        tokens = (rung_tokens(rungs, first) if rungs is not None else None) or max_tokens
        fixed = max_steps or first.trainer.options.get("max_steps")
        steps[label] = math.ceil(tokens / per_step) if tokens is not None else fixed
        if steps[label] is None:
            raise ConfigError(f"run {label!r} has no step budget: pass --max-steps or --max-tokens")
        budgets[label] = steps[label] * per_step
        # the schedule fits the budget only once the budget is known: checked here, before any run trains
        check_schedule(first.schedule.name, first.schedule.options, steps[label])
        evaluation = [] if eval_tokens is None else [f"trainer.eval_interval={math.ceil(eval_tokens / per_step)}"]
        for run_seed in range(first.seed, first.seed + seeds):
            seeding = [f"seed={run_seed}"] if seed is not None or seeds > 1 else []
            directory = label if seeds == 1 else f"{label}/seed-{run_seed}"
            run = PlannedRun(
                label,
                config_file,
                (
                    *contender_overrides,
                    *seeding,
                    *evaluation,
                    f"output.dir={out_dir.resolve() / RUNS_DIR / directory}",
                    f"trainer.max_steps={steps[label]}",
                ),
                run_seed,
                directory,
            )
            configs[directory] = config_record(run.load())  # validates each final config before anything trains
            runs.append(run)
    # With --max-tokens each run trains on max_tokens rounded up to whole steps: the same budget.
    if max_tokens is None and rungs is None and len(set(budgets.values())) > 1:
        listed = ", ".join(f"{label}: {tokens:,}" for label, tokens in budgets.items())
        raise ConfigError(
            f"the runs would train on different numbers of tokens ({listed}) because their batch_size x block_size "
            "differ; pass --max-tokens to give each the same token budget"
        )
    plan = ComparisonPlan(
        tuple(runs),
        steps,
        max_tokens or next(iter(budgets.values())),
        configs,
        seeds,
        target_loss,
        tuning,
        ablation_base,
        rungs,
    )
    if tuning is not None:
        from cleangpt_core.experiments.tuning import check_tuning  # optuna's ranges: checked before anything trains

        check_tuning(plan)
    return plan


def _contenders(
    models: Sequence[str],
    config_files: Sequence[str | Path],
    overrides: Sequence[str],
    variants: Sequence[str],
    contenders: Sequence[ContenderSpec],
) -> tuple[list[str], list[tuple[str | None, list[str]]]]:
    """Each contender's label and what builds its config: a config file (or None) and its overrides.

    The overrides every run shares come first, then the contender's own (its model, then its variant's keys),
    so a contender's setting wins over the shared one.
    """
    written: list[ContenderSpec] = []
    if models:
        config_file = str(config_files[0]) if config_files else None
        written += [ContenderSpec(None, config_file, model) for model in models]
    else:
        written += [ContenderSpec(None, str(path)) for path in config_files]
    written += list(contenders)
    base = str(config_files[0]) if config_files else None
    written += [ContenderSpec(name, base, None, keys) for name, keys in map(parse_variant, variants)]

    from cleangpt_core.registry import get_component

    names, specs = [], []
    for contender in written:
        model = get_component("architecture", contender.model).name if contender.model is not None else None
        config_file = str(Path(contender.config_file).resolve()) if contender.config_file is not None else None
        specs.append(
            (config_file, [*overrides, *([f"model.model_type={model}"] if model else []), *contender.overrides])
        )
        names.append(contender.name or model or (Path(config_file).stem if config_file else "default"))
    labels = _labels(names)
    for contender, label in zip(written, labels, strict=True):
        if contender.name is not None and check_label(contender.name, "contender") != label:
            raise ConfigError(
                f"two contenders are named {contender.name!r}: give each variant or contender its own name"
            )
    return labels, specs


def _load_contender(label: str, config_file: str | None, overrides: Sequence[str]) -> ExperimentConfig:
    """A contender's config, an error naming the contender it belongs to."""
    try:
        return load_experiment_config(config_file, list(overrides))
    except ConfigError as error:
        raise ConfigError(f"contender {label!r}: {error}") from None


def _check_same_setting(configs: dict[str, ExperimentConfig]) -> None:
    """Runs compared must see the same text, split the same way, and start from the same seed."""
    (first_label, first), *others = configs.items()
    ours = first.data.model_dump(exclude=set(FEEDING_FIELDS))
    for label, config in others:
        theirs = config.data.model_dump(exclude=set(FEEDING_FIELDS))
        differing = ["seed"] if config.seed != first.seed else []
        differing += [f"data.{name}" for name in ours if ours[name] != theirs[name]]
        if differing:
            raise ConfigError(
                f"runs {first_label!r} and {label!r} differ in {', '.join(map(repr, differing))}; a comparison trains "
                "every run on the same data and seed (set them with --set FIELD=VALUE for all runs); only how the "
                f"data is fed may differ ({', '.join('data.' + name for name in FEEDING_FIELDS)})"
            )


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


class RunRecorder:
    """A training callback: progress lines while a run trains, and its clock across interruptions.

    Wall time counts everything from the first step to the final checkpoint (evaluations included); training
    time only the optimizer steps, which is what tokens/s divides by. Both are saved at every checkpoint, so
    a resumed run adds to the time it had at the checkpoint it resumes from.
    """

    def __init__(self, label: str, position: str, max_steps: int, echo: Echo) -> None:
        self.label = label
        self.position = position
        self.max_steps = max_steps
        self.echo = echo
        self.every = max(1, max_steps // 10)
        self.parameters: int | None = None
        self.all_parameters = 0
        self.wall_s = 0.0
        self.train_s = 0.0
        self._clock: dict[str, dict[str, float]] = {}
        self._segment_start = 0.0
        self._wall_before = 0.0
        self._step_start = 0.0
        self._last_evaluation: int | None = None

    def on_train_begin(self, trainer: Any) -> None:
        model = trainer.raw_model
        self.parameters = model.get_num_params() if hasattr(model, "get_num_params") else None
        # every tensor, position embeddings included, a tied embedding once: the count records are held to
        self.all_parameters = sum(parameter.numel() for parameter in model.parameters())
        path = Path(trainer.output_dir) / CLOCK_FILE
        resumed = trainer.progress.step > 0 and path.is_file()  # a run started over starts a new clock
        self._clock = json.loads(path.read_text(encoding="utf-8")) if resumed else {}
        at_start = self._clock.get(str(trainer.progress.step), {"wall_s": 0.0, "train_s": 0.0})
        self._wall_before, self.train_s = at_start["wall_s"], at_start["train_s"]
        self._segment_start = time.perf_counter()

    def on_step_begin(self) -> None:
        self._step_start = time.perf_counter()

    def on_step_end(self, step: int, metrics: dict[str, Any]) -> None:
        self.train_s += time.perf_counter() - self._step_start
        if step % self.every == 0 or step == self.max_steps:
            self.echo(
                f"{self.position} {self.label}: step {step}/{self.max_steps}, loss {metrics['loss']:.4f}, "
                f"{metrics['tokens_per_s']:,.0f} tokens/s"
            )

    def on_evaluation_end(self, step: int, metrics: dict[str, Any]) -> None:
        if step != self._last_evaluation:  # the final evaluation repeats a periodic one at the last step
            self.echo(f"{self.position} {self.label}: step {step}, validation loss {metrics['loss']:.4f}")
        self._last_evaluation = step

    def on_checkpoint_saved(self, trainer: Any, step: int) -> None:
        self.wall_s = self._wall_before + time.perf_counter() - self._segment_start
        self._clock[str(step)] = {"wall_s": self.wall_s, "train_s": self.train_s}
        write_text_atomic(Path(trainer.output_dir) / CLOCK_FILE, json.dumps(self._clock))


def run_is_finished(run_dir: Path) -> bool:
    """Whether a run of the comparison completed (its result is saved)."""
    return (run_dir / RESULT_FILE).is_file()


def read_result(run_dir: Path) -> dict[str, Any]:
    """The saved result of a finished run."""
    return json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))


def train_run(
    run: PlannedRun, max_steps: int, position: str, *, echo: Echo, callbacks: Sequence[object] = ()
) -> dict[str, Any]:
    """Train one run of the plan to its budget (continuing its latest checkpoint) and save its result."""
    from cleangpt_core.checkpoints.run_dir import RunDirectory
    from cleangpt_core.experiments.training_run import resume_config, run_experiment
    from cleangpt_core.trainers.metrics import read_metrics

    config = run.load()
    run_dir = RunDirectory(config.output.dir)
    recorder = RunRecorder(run.title, position, max_steps, echo)
    all_callbacks = [recorder, *callbacks]

    def prefixed(line: str) -> None:
        echo(f"{position} {run.title}: {line}")

    load_before = _load_average()
    if run_dir.latest() is not None:
        saved_config, checkpoint = resume_config(run_dir.root)
        stats = run_experiment(saved_config, resume_from=checkpoint, echo=prefixed, callbacks=all_callbacks)
    else:  # stopped before its first checkpoint, if at all: nothing to continue from, so start over
        stats = run_experiment(config, overwrite=True, echo=prefixed, callbacks=all_callbacks)
    records = read_metrics(run_dir.metrics) if run_dir.metrics.is_file() else []
    train_lines = [r for r in records if "loss" in r]
    result = {
        "label": run.label,
        "seed": run.seed,
        "model_type": config.model.model_type,
        "model": model_description(config.model),
        "config_file": run.config_file,
        "parameters": recorder.parameters,
        "all_parameters": recorder.all_parameters,
        "steps": stats["steps"],
        "tokens": stats["tokens"],
        "tokens_per_step": tokens_per_step(config),
        # how often the curve was measured, and on how many validation batches (None: all of them)
        "eval_interval": config.trainer.options.get("eval_interval"),
        "eval_max_batches": config.trainer.options.get("eval_max_batches"),
        # the mean over the last logging interval: the last single step's loss is too noisy to compare
        "train_loss": train_lines[-1]["loss"] if train_lines else stats["train_loss"],
        "val_loss": stats.get("val_loss"),
        "val_perplexity": stats.get("val_perplexity"),
        "val_tokens": stats.get("val_tokens"),  # what the final evaluation scored (data.eval_tokens at most)
        "tokens_per_s": stats["tokens"] / recorder.train_s if recorder.train_s > 0 else None,
        # tokens/s is measured while this run trained alone; the load average says how busy the machine was
        "load_average": [load_before, _load_average()],
        "wall_s": recorder.wall_s,
        "checkpoint": stats.get("checkpoint"),
        "sample": stats.get("sample"),
        # one point per step: the final evaluation (every validation batch) replaces a periodic estimate
        "val_curve": [
            [step, loss] for step, loss in {r["step"]: r["val_loss"] for r in records if "val_loss" in r}.items()
        ],
    }
    write_text_atomic(run_dir.root / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    return result


def _load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS has none, e.g. Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_comparison(
    plan: ComparisonPlan, out_dir: Path, *, echo: Echo = print, callbacks: Sequence[object] = ()
) -> list[dict[str, Any]]:
    """Train every unfinished run of the plan (finished ones are kept) and return all results in plan order."""
    results = []
    for index, run in enumerate(plan.runs, start=1):
        position = f"[{index}/{len(plan.runs)}]"
        run_dir = out_dir / RUNS_DIR / run.directory
        if run_is_finished(run_dir):
            echo(f"{position} {run.title}: finished earlier, kept ({run_dir / RESULT_FILE})")
            results.append({"seed": run.seed, **read_result(run_dir)})  # a version-1 result has no seed
            continue
        results.append(train_run(run, plan.max_steps[run.label], position, echo=echo, callbacks=callbacks))
    return results
