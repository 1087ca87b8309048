"""Creating tokenizers by registered name, and rebuilding saved ones, through the plugin registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cleangpt_core.config.base import validate_config
from cleangpt_core.errors import TokenizerError
from cleangpt_core.registry import get_component, get_registry
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer


class TokenizerFactory:
    """Builds the tokenizers that plugins (the core's own included) register."""

    @staticmethod
    def available() -> list[str]:
        """Names of the registered tokenizers."""
        return [component.name for component in get_registry().components("tokenizer")]

    @staticmethod
    def create_tokenizer(name: str, **options: Any) -> BaseTokenizer:
        """A new tokenizer of the registered type `name`, its options checked against that type's schema."""
        component = get_component("tokenizer", name)
        if component.config_schema is not None:
            # Only the options given are passed on, so a class's own defaults stay the single source of truth.
            validated = validate_config(component.config_schema, options, f"options of tokenizer {component.name!r}")
            options = validated.model_dump(include=set(options))
        cls = component.load()
        if not (isinstance(cls, type) and issubclass(cls, BaseTokenizer)):
            raise TokenizerError(
                f"tokenizer {component.name!r} from {component.distribution} points at {component.target}, "
                "which is not a BaseTokenizer subclass"
            )
        return cls(**options)

    @staticmethod
    def from_pretrained(directory: str | Path) -> BaseTokenizer:
        """Rebuild the tokenizer saved in `directory`, whatever its type (read from the saved files)."""
        return BaseTokenizer.from_pretrained(directory)


def create_tokenizer(name: str, **options: Any) -> BaseTokenizer:
    """Create a tokenizer by registered name: ``create_tokenizer("gpt2")``, ``create_tokenizer("character")``."""
    return TokenizerFactory.create_tokenizer(name, **options)


def from_pretrained(directory: str | Path) -> BaseTokenizer:
    """Load a tokenizer saved with ``save_pretrained``; the saved files say which type to rebuild."""
    return TokenizerFactory.from_pretrained(directory)
