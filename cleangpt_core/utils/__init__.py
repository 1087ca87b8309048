"""Data loading and token analysis utilities."""

from cleangpt_core.errors import DataError
from cleangpt_core.utils.data_utils import (
    TokenBlockDataset,
    load_and_prepare_data,
    load_corpus_tokens,
    load_text_documents,
    make_dataloader,
    prepare_causal_lm_dataset,
    tinyshakespeare_split,
    tinyshakespeare_text,
)
from cleangpt_core.utils.token_cache import cached_token_array, default_cache_dir, tokenize_documents

__all__ = [
    "DataError",
    "TokenBlockDataset",
    "cached_token_array",
    "default_cache_dir",
    "load_and_prepare_data",
    "load_corpus_tokens",
    "load_text_documents",
    "make_dataloader",
    "prepare_causal_lm_dataset",
    "tinyshakespeare_split",
    "tinyshakespeare_text",
    "tokenize_documents",
]
