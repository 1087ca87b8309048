"""`get_model`: build any registered architecture from a validated config."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from torch import nn

from cleangpt_core.config import GPTConfig, ModelConfig, format_validation_error
from cleangpt_core.errors import ConfigError
from cleangpt_core.registry import get_component, get_registry


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
    against the architecture's schema: an unknown field is an error naming the nearest valid one.
    """
    gpt_config = build_config(model_type, config, **overrides)
    model_class = get_component("architecture", gpt_config.model_type).load()
    return model_class(gpt_config.for_architecture())
