"""The byte tokenizer's options (pydantic only, read when cleanGPT lists components)."""

from __future__ import annotations

from cleangpt_core.config.base import StrictModel


class ByteLevelTokenizerConfig(StrictModel):
    """The byte tokenizer has no options: its 259 ids are fixed. Unknown options are rejected by name."""
