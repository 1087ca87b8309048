"""Tokenizers: the interface, the built-in character, GPT-2 and Hugging Face tokenizers, and the factory.

Names load on first access (PEP 562): the plugin registry imports `cleangpt_core.tokenizers.schemas` while
building the CLI, and that must not import numpy, torch or transformers through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cleangpt_core.errors import TokenizerError, TokenizerLoadError, UnknownTokenError
from cleangpt_core.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer, BatchEncoding
    from cleangpt_core.tokenizers.character_tokenizer import CharacterTokenizer
    from cleangpt_core.tokenizers.factory import TokenizerFactory, create_tokenizer, from_pretrained
    from cleangpt_core.tokenizers.gpt2_tokenizer import GPT2Tokenizer
    from cleangpt_core.tokenizers.hf_tokenizer import HFTokenizer
    from cleangpt_core.tokenizers.reduced_tokenizer import ReducedVocabTokenizer

_EXPORTS = {
    "BaseTokenizer": ".base_tokenizer",
    "BatchEncoding": ".base_tokenizer",
    "CharacterTokenizer": ".character_tokenizer",
    "GPT2Tokenizer": ".gpt2_tokenizer",
    "HFTokenizer": ".hf_tokenizer",
    "ReducedVocabTokenizer": ".reduced_tokenizer",
    "TokenizerFactory": ".factory",
    "create_tokenizer": ".factory",
    "from_pretrained": ".factory",
}

__all__ = [
    "BaseTokenizer",
    "BatchEncoding",
    "CharacterTokenizer",
    "GPT2Tokenizer",
    "HFTokenizer",
    "ReducedVocabTokenizer",
    "TokenizerError",
    "TokenizerFactory",
    "TokenizerLoadError",
    "UnknownTokenError",
    "create_tokenizer",
    "from_pretrained",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
