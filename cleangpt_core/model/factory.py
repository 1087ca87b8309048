"""Building a model from a config: the config, validated by its architecture's schema (`build_config`); the
part classes a decoder is composed of, resolved from it (`resolve_parts`); and the model (`get_model`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from cleangpt_core.config import DecoderConfig, GPTConfig, ModelConfig, format_validation_error
from cleangpt_core.config.parts import PartChoice, PartConfig
from cleangpt_core.errors import ConfigError
from cleangpt_core.plugin_api import PART_KINDS
from cleangpt_core.registry import get_component, get_registry


@dataclass(frozen=True)
class PartClasses:
    """The part classes a decoder is built from, one per kind (what a residual block builds its sub-blocks of).

    Any callable with a part's constructor signature will do, e.g. a function choosing a norm by option;
    `resolve_parts` gives each the options its config section holds (`BoundPart`).
    """

    attention: Callable[..., nn.Module]
    feedforward: Callable[..., nn.Module]
    norm: Callable[..., nn.Module]
    position: Callable[..., nn.Module]
    residual: Callable[..., nn.Module]

    @classmethod
    def of(cls, config: ModelConfig) -> PartClasses:
        """The parts `config` names (plugin API 1.1's name for `resolve_parts`)."""
        return resolve_parts(config)


@dataclass(frozen=True)
class BoundPart:
    """A part class with the options its section of the model config validated: called with the model config
    (or the `PartConfig` a residual block got) and the kind's other arguments, it builds the part from a
    `PartConfig` holding its own options."""

    part: Callable[..., nn.Module]
    options: BaseModel | None

    def __call__(self, config: Any, *args: Any, **kwargs: Any) -> nn.Module:
        return self.part(PartConfig(config, self.options), *args, **kwargs)


def resolve_parts(config: ModelConfig) -> PartClasses:
    """The part classes `config` names, each bound to its validated options.

    A config that names no parts (an architecture of plugin API 1.0 that brings its own blocks) gets Vanilla's
    default parts, and a part named by a bare string (a config made without validation, `model_construct`) has
    no validated options: those parts read their options from the config's own fields, as they always did.
    """
    named = config if isinstance(config, DecoderConfig) else DecoderConfig.model_construct()
    chosen = {}
    for kind in PART_KINDS:
        choice = getattr(named, kind)
        chosen[kind] = (choice.name, choice.options) if isinstance(choice, PartChoice) else (str(choice), None)
    return PartClasses(
        **{kind: BoundPart(get_component(kind, name).load(), options) for kind, (name, options) in chosen.items()}
    )


def build_config(model_type: str, config: ModelConfig | dict[str, Any] | None = None, **overrides: Any) -> GPTConfig:
    """Merge `config` and `overrides` into a `GPTConfig` for `model_type`, validated by its own schema."""
    if isinstance(config, ModelConfig):
        data = config.model_dump()
    elif isinstance(config, dict):
        data = dict(config)
    elif config is None:
        data = {}
    else:
        raise ConfigError(f"config must be a GPTConfig, a ModelConfig or a dict, got {type(config).__name__}")
    requested = get_component("architecture", model_type)
    stated = data.get("model_type")
    if stated is not None and get_component("architecture", str(stated)) is not requested:
        raise ConfigError(
            f"get_model({model_type!r}) was given a config for model_type={stated!r}; pass matching names"
        )
    data.update(overrides)
    data["model_type"] = get_registry().canonical_name(requested)  # keeps `distribution:` where it matters
    try:
        return GPTConfig.model_validate(data)
    except ValidationError as error:  # GPTConfig's message already names the architecture
        raise ConfigError(format_validation_error(error)) from None


def get_model(model_type: str, config: ModelConfig | dict[str, Any] | None = None, **overrides: Any) -> nn.Module:
    """A freshly initialised model of the registered architecture `model_type`.

    `config` (a `GPTConfig`, the architecture's own schema or a dict) and keyword `overrides` are checked
    against the architecture's schema: an unknown field is an error naming the nearest valid one. A decoder's
    parts are resolved here, before it is built, and handed to it.
    """
    gpt_config = build_config(model_type, config, **overrides)
    model_class = get_component("architecture", gpt_config.model_type).load()
    if gpt_config.parametrization == "mup" and not getattr(model_class, "supports_mup", False):
        raise ConfigError(
            f"architecture {gpt_config.model_type!r} does not implement model.parametrization=mup (only models "
            "built on the decoder do); use parametrization=standard"
        )
    architecture_config = gpt_config.for_architecture()
    # Architectures of plugin API 1.x take the config alone (and a decoder among them resolves its own parts).
    if "parts" in inspect.signature(model_class).parameters:
        return model_class(architecture_config, parts=resolve_parts(architecture_config))
    return model_class(architecture_config)
