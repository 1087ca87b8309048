"""The experiment config: data, tokenizer, model, trainer, sampling and output in one validated object.

It loads from YAML or TOML and takes ``--set a.b=c`` overrides whose values are parsed as YAML scalars
(``8`` is an int, ``true`` a bool, ``[1, 2]`` a list) by a safe loader: nothing in a config is ever evaluated.
Each component section names a registered component and carries its options, which are validated
against that component's schema before any work starts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from cleangpt_core.config.base import StrictModel, format_validation_error, validate_config
from cleangpt_core.config.model import GPTConfig
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


class TrainerSection(ComponentSection):
    """Which training strategy, and its options."""

    kind: ClassVar[str] = "trainer"
    name: str = "simple"


class SamplingSection(ComponentSection):
    """Which sampler generates samples after training, and its parameters."""

    kind: ClassVar[str] = "sampler"
    name: str = "combined"


class DataConfig(StrictModel):
    """Where the text comes from and how it is split."""

    dataset: str = Field(
        "tinyshakespeare",
        description="'tinyshakespeare' (embedded), a local .txt/.json/.jsonl file or folder, a hub dataset name, "
        "or a folder written by `cleangpt prepare-data`",
    )
    dataset_config: str | None = Field(None, description="the hub dataset's configuration name, if it has several")
    text_field: str = Field("text", description="column holding the text in JSON or hub datasets")
    max_samples: PositiveInt | None = Field(None, description="use at most this many documents")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="tail of the corpus held out for validation")
    batch_size: PositiveInt = Field(12, description="training windows per batch (per process under torchrun)")
    eval_batch_size: PositiveInt | None = Field(None, description="windows per validation batch; default batch_size")
    windows: Literal["random", "blocks"] = Field(
        "random",
        description="'random': a training window starts at every token, taken in shuffled order (nanoGPT's "
        "sampling); 'blocks': consecutive windows sharing one token, each token a target once per epoch",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0 loads in the training process)")


class OptimizerConfig(StrictModel):
    """AdamW, with weight decay on weight matrices and embeddings only (not on gains, norms and biases)."""

    name: Literal["adamw"] = Field("adamw", description="the optimizer (AdamW)")
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate")
    betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW's moment decay rates")
    weight_decay: float = Field(0.1, ge=0.0, description="decoupled weight decay of matrices and embeddings")
    eps: float = Field(1e-8, gt=0.0, description="AdamW's denominator epsilon")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        return betas


class OutputConfig(StrictModel):
    """Where a run writes its checkpoints, logs and samples."""

    dir: Path = Field(Path("runs/default"), description="run directory (created if missing)")
    sample_prompt: str = Field("\n", description="text the sample written after training continues")
    sample_tokens: int = Field(300, ge=0, description="tokens in that sample; 0 writes none")


class ExperimentConfig(StrictModel):
    """Everything one training run needs; saved as JSON with every checkpoint."""

    seed: int = Field(1337, description="seeds torch, numpy and Python's random for the whole run")
    device: str = Field("auto", description="'auto' (cuda, then mps, then cpu) or a torch device such as 'cpu'")
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    model: GPTConfig = Field(default_factory=GPTConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    trainer: TrainerSection = Field(default_factory=TrainerSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    output: OutputConfig = Field(default_factory=OutputConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML file into a dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"config file {str(path)!r}: use a .yaml, .yml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(
            f"config file {str(path)!r} is not valid {path.suffix[1:].upper()}: {' '.join(str(error).split())}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return `data` with each ``dotted.key=value`` override set (values parsed as YAML scalars)."""
    result = _deep_copy(data)
    for override in overrides:
        key, separator, raw_value = override.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"override {override!r} must look like section.field=value")
        try:
            value = yaml.safe_load(raw_value) if raw_value.strip() else ""
        except yaml.YAMLError:
            value = raw_value
        *parents, leaf = key.strip().split(".")
        node = result
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                path = ".".join(parents[: depth + 1])
                raise ConfigError(f"override {override!r}: {path!r} is a value, not a section")
            node = child
        node[leaf] = value
    return result


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, dict) else value for key, value in data.items()}


def load_experiment_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment config from a file (or the defaults), apply overrides and validate it."""
    data = read_config_file(path) if path is not None else {}
    return validate_config(ExperimentConfig, apply_overrides(data, overrides or []), "experiment config")
