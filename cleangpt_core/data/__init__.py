"""The data pipeline: from text (the embedded Tiny Shakespeare, local files, Hugging Face datasets) to token
streams and the windows a model trains on.

- `document_sources`: reading documents from files and folders, cut into work units for `prepare-data`
- `python_stdlib`: the running Python's standard-library sources, the built-in corpus ``python-stdlib``
- `token_cache`: token streams cached on disk, keyed by corpus and tokenizer; `progress`: its progress bar
- `shard_writer`: ``cleangpt prepare-data``, a corpus tokenized into shards by worker processes
- `prepared_data`: reading a prepared corpus back from its shards
- `loading`: the corpus named by a config as token streams (`load_corpus_tokens`, the tutorial's helpers)
- `windows`: the window datasets a trainer and an evaluation iterate

The names below are imported on first use, so that importing a light module of this package (or the
embedded corpus as a resource) does not import torch.
"""

from cleangpt_core.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "RandomWindowDataset": ".windows",
        "TokenBlockDataset": ".windows",
        "cached_token_array": ".token_cache",
        "default_cache_dir": ".token_cache",
        "tokenize_documents": ".token_cache",
        "load_and_prepare_data": ".loading",
        "load_corpus_tokens": ".loading",
        "load_text_documents": ".loading",
        "make_dataloader": ".loading",
        "prepare_causal_lm_dataset": ".loading",
        "tinyshakespeare_split": ".loading",
        "tinyshakespeare_text": ".loading",
    },
)
