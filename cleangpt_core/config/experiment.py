"""The experiment config: data, tokenizer, model, optimizer, schedule, trainer, sampling and output in one object.

The schema's defaults are the default recipe (``cleangpt train`` with no options; ``configs/default.yaml``
spells it out): a 0.8M-parameter character-level model on the embedded Tiny Shakespeare, nanoGPT's
shakespeare_char CPU recipe at twice its learning rate and a third more tokens per step, which reaches a
validation loss of 1.75 in 2000 steps instead of nanoGPT's 1.91 (benchmarks/bench_quality.py).

`resolve_experiment` is the one loader: ``cleangpt train``, ``compare``, ``evaluate``, resuming and the Python
API (`load_experiment_config`) all lay a config over the defaults through it, so one file gives one run
everywhere. A config file is laid over the defaults section by section; a section that names another
component (``trainer: {name: simple}``) replaces the default's section, so that component gets its own
defaults rather than options meant for another. Overrides (``--set a.b=c``) are parsed as YAML scalars
(``8`` is an int, ``true`` a bool, ``[1, 2]`` a list) by a safe loader: nothing in a config is ever evaluated.
Each component section names a registered component and carries its options, which are validated
against that component's schema before any work starts.
"""

from __future__ import annotations

import json
import tomllib
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from cleangpt_core.config.base import MAX_SEED, StrictModel, format_validation_error, validate_config
from cleangpt_core.config.model import GPTConfig
from cleangpt_core.config.optim import MOVED_SCHEDULE_FIELDS
from cleangpt_core.config.tracking import LoggingConfig
from cleangpt_core.config.yaml_loading import load_yaml
from cleangpt_core.errors import ConfigError


class ComponentSection(StrictModel):
    """A component chosen by name, plus options checked against the schema that component registers."""

    kind: ClassVar[str]
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str

    @model_validator(mode="before")
    @classmethod
    def _validate_options(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from cleangpt_core.registry import get_component

        # A section built with no name (a default) still gets its component's defaults filled in.
        component = get_component(cls.kind, str(data.get("name", cls.model_fields["name"].default)))
        options = {key: value for key, value in data.items() if key != "name"}
        if component.config_schema is not None:
            try:
                options = component.config_schema.model_validate(options).model_dump()
            except ValidationError as error:
                raise ValueError(f"invalid {cls.kind} {component.name!r}: {format_validation_error(error)}") from None
        return {"name": component.name, **options}

    @property
    def options(self) -> dict[str, Any]:
        """The component's options (defaults filled in), as keyword arguments for its constructor."""
        return dict(self.model_extra or {})


class TokenizerSection(ComponentSection):
    """Which tokenizer, and its options."""

    kind: ClassVar[str] = "tokenizer"
    name: str = "character"


# Trainer options that a run sets once for all its parts: the experiment's `seed` and `output.dir`.
RUN_LEVEL_TRAINER_OPTIONS = {"seed": "seed", "output_dir": "output.dir"}


class TrainerSection(ComponentSection):
    """Which training strategy, and its options (the seed and the run directory are the run's: `seed`,
    `output.dir`)."""

    kind: ClassVar[str] = "trainer"
    name: str = "advanced"

    @model_validator(mode="after")
    def _run_level_options_are_the_runs(self) -> TrainerSection:
        for option in RUN_LEVEL_TRAINER_OPTIONS:
            (self.model_extra or {}).pop(option, None)
        return self


class OptimizerSection(ComponentSection):
    """Which optimizer, and its options (learning rates, betas, weight decay...)."""

    kind: ClassVar[str] = "optimizer"
    name: str = "adamw"


class ScheduleSection(ComponentSection):
    """Which learning-rate schedule, and its options (warmup, decay...), stated relative to the run's length."""

    kind: ClassVar[str] = "schedule"
    name: str = "cosine"


class SamplingSection(ComponentSection):
    """Which sampler generates samples after training, and its parameters."""

    kind: ClassVar[str] = "sampler"
    name: str = "combined"


# data.eval_tokens='auto': a run's evaluations score as many validation tokens as it trains on, so a tiny run
# never spends longer evaluating than training (a token scored costs about a third of one trained: no backward),
# within two bounds. The cap keeps the end of a long run on a large corpus to seconds; the floor keeps the
# estimate's standard error, which every evaluation reports, small (benchmarks/results/eval_tokens.md).
AUTO_EVAL_CAP = 500_000
AUTO_EVAL_FLOOR = 32_768

# The recipe's warm-up, a share of the run so that it fits any length; also what a warm-up in steps too long for
# a run it was not set for is shortened to (`cleangpt_core.trainers.optim_factory.fit_schedule`).
DEFAULT_WARMUP_FRACTION = 0.05


class DataConfig(StrictModel):
    """Where the text comes from and how it is split."""

    dataset: str = Field(
        "tinyshakespeare",
        description="'tinyshakespeare' (embedded), 'python-stdlib' (this Python's standard-library sources), a "
        "local .txt/.json/.jsonl file or folder, a hub dataset name, or a folder written by `cleangpt prepare-data`",
    )
    dataset_config: str | None = Field(None, description="the hub dataset's configuration name, if it has several")
    text_field: str = Field("text", description="column holding the text in JSON or hub datasets")
    max_samples: PositiveInt | None = Field(None, description="use at most this many documents")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="tail of the corpus held out for validation")
    # a third more than nanoGPT's 12: better text for ~25% more time
    batch_size: PositiveInt = Field(16, description="training windows per batch (per process under torchrun)")
    eval_batch_size: PositiveInt | None = Field(None, description="windows per validation batch; default batch_size")
    eval_tokens: PositiveInt | Literal["all", "auto"] = Field(
        "auto",
        description="validation tokens the evaluations and `cleangpt evaluate` score (the head of the validation "
        f"split): 'auto' as many as the run trains on, at least {AUTO_EVAL_FLOOR:,} and at most "
        f"{AUTO_EVAL_CAP:,}; a number; or 'all' for every one",
    )
    windows: Literal["random", "blocks"] = Field(
        "random",
        description="'random': a training window starts at every token, taken in shuffled order (nanoGPT's "
        "sampling); 'blocks': consecutive windows sharing one token, each token a target once per epoch",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0 loads in the training process)")


class OutputConfig(StrictModel):
    """Where a run writes its checkpoints, logs and samples."""

    dir: Path = Field(Path("runs/default"), description="run directory (created if missing)")
    sample_prompt: str = Field("\n", description="text the sample written after training continues")
    sample_tokens: int = Field(300, ge=0, description="tokens in that sample; 0 writes none")


def _default_model() -> GPTConfig:
    # no dropout: 2000 steps see each character about once
    return GPTConfig(model_type="Vanilla", n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)


def _default_optimizer() -> OptimizerSection:
    # lr twice nanoGPT's: at the default size 2000 steps are too few for 1e-3;
    # beta2 0.99: few tokens per step, so a shorter memory for the second moment
    return OptimizerSection(name="adamw", lr=2e-3, betas=(0.9, 0.99), weight_decay=0.1)


def _default_schedule() -> ScheduleSection:
    return ScheduleSection(name="cosine", warmup_steps=DEFAULT_WARMUP_FRACTION, min_lr_ratio=0.1)


def _default_trainer() -> TrainerSection:
    return TrainerSection(
        name="advanced",
        num_epochs=10,
        max_steps=2000,
        grad_clip=1.0,
        eval_interval=250,
        eval_max_batches=50,
        checkpoint_interval=500,
    )


def _default_sampling() -> SamplingSection:
    return SamplingSection(name="combined", temperature=0.8, top_k=40)


class ExperimentConfig(StrictModel):
    """Everything one training run needs; saved as JSON with every checkpoint. The defaults are the recipe."""

    seed: int = Field(
        1337,
        ge=0,
        le=MAX_SEED,
        description="seeds torch, numpy and Python's random for the whole run (initialisation, dropout) and the "
        "trainer's data order",
    )
    device: str = Field("auto", description="'auto' (cuda, then mps, then cpu) or a torch device such as 'cpu'")
    init_from: str | None = Field(
        None,
        description="weights the run started from (`cleangpt train --init-from`: a run, a checkpoint, an exported "
        "or a Hugging Face folder), whose model config and tokenizer it took; None: a fresh initialisation",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    model: GPTConfig = Field(default_factory=_default_model)
    optimizer: OptimizerSection = Field(default_factory=_default_optimizer)
    schedule: ScheduleSection = Field(default_factory=_default_schedule)
    trainer: TrainerSection = Field(default_factory=_default_trainer)
    sampling: SamplingSection = Field(default_factory=_default_sampling)
    output: OutputConfig = Field(default_factory=OutputConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    # Set by `resolve_experiment`: whether the config itself sets model.vocab_size (else the tokenizer's is used).
    _vocab_size_given: bool = PrivateAttr(default=False)

    @property
    def vocab_size_given(self) -> bool:
        """Whether model.vocab_size was chosen by the config (kept) rather than left to the tokenizer."""
        return self._vocab_size_given


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML file into a dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start}); save it as UTF-8"
        ) from None
    try:
        if path.suffix in {".yaml", ".yml"}:
            data = load_yaml(text, f"config file {str(path)!r}")
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":  # a run's own experiment.json
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {str(path)!r}: use a .yaml, .yml, .toml or .json file")
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r} nests too deeply to read; flatten it") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"config file {str(path)!r} is not valid {path.suffix[1:].upper()}: {' '.join(str(error).split())}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return `data` with each ``dotted.key=value`` override set (values parsed as YAML scalars).

    A section named by a string alone (``model: {attention: gqa}``) takes options as ``{name: gqa, ...}``
    does: ``--set model.attention.n_kv_head=2`` sets one of them.
    """
    result = _deep_copy(data)
    for override in overrides:
        key, separator, raw_value = override.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"override {override!r} must look like section.field=value")
        try:
            value = load_yaml(raw_value, f"override {override!r}") if raw_value.strip() else ""
        except yaml.YAMLError:
            value = raw_value
        *parents, leaf = key.strip().split(".")
        node = result
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if isinstance(child, str) and depth > 0:  # a component named by its name alone (`attention: gqa`)
                child = node[part] = {"name": child}
            if not isinstance(child, dict):
                path = ".".join(parents[: depth + 1])
                raise ConfigError(f"override {override!r}: {path!r} is a value, not a section")
            node = child
        node[leaf] = value
    return result


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, dict) else value for key, value in data.items()}


def default_sections() -> dict[str, Any]:
    """The defaults as a config would spell them, section by section, for laying a config over.

    A component section is its name and every option; any other section only the values where the default
    recipe departs from that section schema's own defaults (so a model section keeps the recipe's shape when
    another architecture is chosen, without imposing Vanilla's other fields on it).
    """
    sections: dict[str, Any] = {}
    for field, value in ExperimentConfig():
        if isinstance(value, ComponentSection):
            sections[field] = {"name": value.name, **value.options}
        elif isinstance(value, BaseModel):
            # extras are the chosen architecture's own fields (Vanilla's parts): not the section schema's
            departures = value.model_dump(mode="json", exclude_defaults=True)
            sections[field] = {key: departures[key] for key in type(value).model_fields if key in departures}
        else:
            sections[field] = value
    return sections


def move_schedule_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
    """`data` with the schedule fields of an older ``trainer:`` section moved into ``schedule:``, as it means.

    Runs saved before the schedule became a component (their experiment.json) resume unchanged through it, and
    older config files keep working with a warning naming where each field went. An older run without a
    cosine schedule trained at the optimizer's learning rate throughout: its schedule is `constant`.
    """
    trainer = data.get("trainer")
    moved = sorted(set(MOVED_SCHEDULE_FIELDS) & set(trainer)) if isinstance(trainer, dict) else []
    if not moved:
        return data
    if "schedule" in data:
        raise ConfigError(
            f"{where}: trainer.{moved[0]} has moved to the schedule: section, which is given too; "
            f"set {', '.join(f'schedule.{MOVED_SCHEDULE_FIELDS[key]}' for key in moved)} there instead"
        )
    warnings.warn(
        f"{where}: {', '.join(f'trainer.{key}' for key in moved)} moved to the schedule: section "
        f"({', '.join(f'schedule.{MOVED_SCHEDULE_FIELDS[key]}' for key in moved)}); read as such",
        FutureWarning,
        stacklevel=2,
    )
    trainer = dict(trainer)
    old = {key: trainer.pop(key) for key in moved}
    if old.get("lr_schedule", "cosine") == "cosine":
        schedule = {MOVED_SCHEDULE_FIELDS[key]: value for key, value in old.items() if value is not None}
    else:  # the old constant schedule had no warmup: the optimizer's learning rate from the first step
        schedule = {"name": "constant"}
    return {**data, "trainer": trainer, "schedule": schedule}


def move_run_level_trainer_options(data: dict[str, Any], where: str) -> dict[str, Any]:
    """`data` with ``trainer.seed`` and ``trainer.output_dir`` read as the run's `seed` and `output.dir`.

    A run has one seed (initialisation, dropout and data order) and one directory. Saved runs and older
    configs spelled them in the trainer section too: the same value is dropped there; ``trainer.seed`` alone
    becomes the seed, with a warning (it used to seed the data order only); a value that differs is refused.
    """
    trainer = data.get("trainer")
    if not isinstance(trainer, dict):
        return data
    given = {key: trainer[key] for key in RUN_LEVEL_TRAINER_OPTIONS if key in trainer}
    if not given:
        return data
    data = {**data, "trainer": {key: value for key, value in trainer.items() if key not in given}}
    seed = given.get("seed")
    if seed is not None and "seed" not in data:
        warnings.warn(
            f"{where}: trainer.seed is the run's seed now (initialisation and data order alike); read as seed={seed}",
            FutureWarning,
            stacklevel=3,
        )
        data["seed"] = seed
    output = data.get("output")
    run_values = {"seed": data.get("seed"), "output_dir": output.get("dir") if isinstance(output, dict) else None}
    for key, value in given.items():
        if value is not None and (run_values[key] is None or str(run_values[key]) != str(value)):
            field = RUN_LEVEL_TRAINER_OPTIONS[key]
            raise ConfigError(
                f"{where}: trainer.{key}={value!r} is the run's {field}; set {field} (and not trainer.{key})"
            )
    return data


def resolve_experiment(
    data: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), where: str = "experiment config"
) -> ExperimentConfig:
    """The one loader: the default recipe, then `data` (a config file's content), then the overrides."""
    # a file's trainer.seed alone is its seed, which an override may then change; one given by an override too
    data = move_run_level_trainer_options(data, where)
    data = move_run_level_trainer_options(move_schedule_fields(apply_overrides(data, list(overrides)), where), where)
    merged: dict[str, Any] = {}
    for section, default in default_sections().items():
        given = data.get(section)
        if isinstance(default, dict) and isinstance(given, dict) and not _names_another_component(section, given):
            merged[section] = _deep_merge(default, given)
        else:
            merged[section] = given if section in data else default
    merged.update({key: value for key, value in data.items() if key not in merged})  # unknown: the schema says so
    config = validate_config(ExperimentConfig, merged, where)
    model_section = data.get("model")
    config._vocab_size_given = isinstance(model_section, dict) and "vocab_size" in model_section
    return config


def load_experiment_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] | None = None
) -> ExperimentConfig:
    """The experiment of a YAML or TOML file (or the default recipe) with ``section.field=value`` overrides."""
    data = read_config_file(path) if path is not None else {}
    where = f"experiment config {str(path)!r}" if path is not None else "experiment config"
    return resolve_experiment(data, overrides or (), where)


def _names_another_component(section: str, given: dict[str, Any]) -> bool:
    field = ExperimentConfig.model_fields[section]
    schema = field.annotation
    if not (isinstance(schema, type) and issubclass(schema, ComponentSection)) or "name" not in given:
        return False
    from cleangpt_core.registry import get_component

    default_name = field.get_default(call_default_factory=True).name
    return get_component(schema.kind, str(given["name"])).name != default_name


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
