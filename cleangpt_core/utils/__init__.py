"""The tutorial's data helpers (`load_and_prepare_data`, `prepare_causal_lm_dataset`) and token analysis
(`token_statistics`). The data pipeline itself lives in `cleangpt_core.data`."""

from cleangpt_core.data.loading import (
    load_and_prepare_data,
    load_corpus_tokens,
    load_text_documents,
    make_dataloader,
    prepare_causal_lm_dataset,
    tinyshakespeare_split,
    tinyshakespeare_text,
)
from cleangpt_core.data.token_cache import cached_token_array, default_cache_dir, tokenize_documents
from cleangpt_core.data.windows import TokenBlockDataset
from cleangpt_core.errors import DataError

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
