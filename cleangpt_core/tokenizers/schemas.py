"""Constructor options of the built-in tokenizers, as pydantic schemas (no torch, no transformers).

The registry shows these with ``cleangpt show-config`` and validates an experiment's ``tokenizer`` section
against them before any work starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cleangpt_core.config.base import StrictModel


class CharacterTokenizerConfig(StrictModel):
    """Options of the character tokenizer."""

    vocab: list[str] | dict[str, int] | None = Field(
        None,
        description="characters (list, id = position) or {character: id}; None learns them from the first corpus",
    )
    unk_policy: Literal["error", "unk"] = Field(
        "error", description="an unknown character raises ('error') or becomes the <unk> token ('unk')"
    )


class GPT2TokenizerConfig(StrictModel):
    """Options of the GPT-2 tokenizer."""

    pretrained_model_name_or_path: str = Field(
        "gpt2", description="Hugging Face hub name, or a local folder holding vocab.json and merges.txt"
    )
    pad_token: str | None = Field(None, description="padding token; None pads with <|endoftext|>, as usual for GPT-2")


class HFTokenizerConfig(StrictModel):
    """Options of the Hugging Face tokenizer."""

    name_or_path: str = Field(
        description="a folder holding tokenizer.json, or a name or folder AutoTokenizer loads (no remote code)"
    )
    eos_token: str | None = Field(None, description="end-of-document token; None takes the tokenizer's own")
    pad_token: str | None = Field(None, description="padding token; None takes the tokenizer's own")
    bos_token: str | None = Field(None, description="beginning-of-sequence token; None takes the tokenizer's own")
    unk_token: str | None = Field(None, description="unknown-text token; None takes the tokenizer's own")


class ReducedVocabConfig(StrictModel):
    """Options of a tokenizer whose vocabulary was cut down by token analysis."""

    base: str = Field(description="folder of the saved base tokenizer (from save_pretrained)")
    kept_ids: list[int] = Field(min_length=1, description="base-tokenizer ids to keep, in their new order")
