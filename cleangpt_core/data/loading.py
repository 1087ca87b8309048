"""From text to batches for causal language modelling.

Text comes from the embedded Tiny Shakespeare, the running Python's standard library (`python_stdlib`), a
local .txt / .json / .jsonl file or folder, an already-loaded Hugging Face `datasets.Dataset`, or a hub dataset
name. It becomes one token stream (documents separated by the tokenizer's eos token, cached on disk by
`token_cache`) cut into overlapping windows by `TokenBlockDataset`. A corpus too large for memory is prepared
first (`cleangpt prepare-data`, see `shard_writer`); its directory is then read from its shards
(`prepared_data`) wherever a dataset is named. A character tokenizer that has no vocabulary yet is fitted on
the training text first (on all of python-stdlib's).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from cleangpt_core.data.document_sources import decode_utf8
from cleangpt_core.data.prepared_data import PreparedCorpus, ShardedTokens, held_out_documents, is_prepared_dir
from cleangpt_core.data.python_stdlib import corpus_files, is_python_stdlib
from cleangpt_core.data.token_cache import cached_token_array, default_cache_dir, tokenize_documents
from cleangpt_core.data.windows import TokenBlockDataset
from cleangpt_core.errors import DataError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer

TINYSHAKESPEARE = "tinyshakespeare"
LOCAL_SUFFIXES = (".txt", ".json", ".jsonl")
TRAIN_SPLIT, VALIDATION_SPLIT = "train", "validation"
_SPLIT_ALIASES = {
    "train": TRAIN_SPLIT,
    "validation": VALIDATION_SPLIT,
    "val": VALIDATION_SPLIT,
    "valid": VALIDATION_SPLIT,
}


# --- the corpus -----------------------------------------------------------------------------------------------


def tinyshakespeare_text() -> str:
    """The embedded Tiny Shakespeare corpus (1,115,394 characters; see cleangpt_core/data/README.md)."""
    return resources.files("cleangpt_core").joinpath("data", "tinyshakespeare.txt").read_text(encoding="utf-8")


def split_text(text: str, split: str, val_fraction: float = 0.1) -> str:
    """The head (train) or tail (validation) of one text, cut at ``int(len * (1 - val_fraction))`` as nanoGPT does."""
    cut = int(len(text) * (1.0 - val_fraction))
    return text[:cut] if _split_name(split) == TRAIN_SPLIT else text[cut:]


def tinyshakespeare_split(split: str = "train", val_fraction: float = 0.1) -> str:
    """Tiny Shakespeare's train (first 1,003,854 characters) or validation (last 111,540) text."""
    return split_text(tinyshakespeare_text(), split, val_fraction)


def _split_name(split: str) -> str:
    name = _SPLIT_ALIASES.get(split.lower())
    if name is None:
        raise DataError(f"split {split!r} is not available here; use 'train' or 'validation'")
    return name


def _split_documents(documents: list[str], split: str, val_fraction: float) -> list[str]:
    """The deterministic tail split of a source that has no split of its own."""
    if len(documents) == 1:
        return [split_text(documents[0], split, val_fraction)]
    held_out = held_out_documents(len(documents), val_fraction)
    return documents[:-held_out] if _split_name(split) == TRAIN_SPLIT else documents[-held_out:]


def _read_text_file(path: Path) -> str:
    return decode_utf8(path.read_bytes(), repr(str(path)))


def _python_stdlib_documents() -> list[str]:
    # blank files (many an __init__.py) go before the split, as for a local folder and in prepare-data
    documents = (_read_text_file(path) for path in corpus_files())
    return [document for document in documents if document.strip()]


def _json_documents(path: Path, text_field: str, cache_dir: Path) -> list[str]:
    import datasets

    try:
        dataset = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache_dir / "hf"))
    except Exception as error:  # datasets wraps parse errors in several types of its own
        raise DataError(f"could not read {str(path)!r} as JSON lines or a JSON list: {_one_line(error)}") from None
    return _column(dataset, text_field, str(path))


def _column(dataset: Any, text_field: str, where: str) -> list[str]:
    if text_field not in dataset.column_names:
        raise DataError(
            f"{where} has no column {text_field!r}; its columns are {dataset.column_names} (set text_field)"
        )
    values = dataset[text_field]
    bad = next((v for v in values if not isinstance(v, str)), None)
    if bad is not None:
        raise DataError(f"column {text_field!r} of {where} holds {type(bad).__name__} values, not text")
    return list(values)


def _local_documents(path: Path, text_field: str, cache_dir: Path) -> list[str]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in LOCAL_SUFFIXES)
        if not files:
            raise DataError(f"folder {str(path)!r} holds no {'/'.join(LOCAL_SUFFIXES)} files")
        return [doc for file in files for doc in _local_documents(file, text_field, cache_dir)]
    if path.suffix == ".txt":
        return [_read_text_file(path)]
    if path.suffix in (".json", ".jsonl"):
        return _json_documents(path, text_field, cache_dir)
    raise DataError(f"{str(path)!r}: use a .txt, .json or .jsonl file, or a folder of them")


def _hub_documents(name: str, config: str | None, split: str, text_field: str, max_samples: int | None) -> list[str]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # offline, unknown name, unknown config or split: all reported the same way
        raise DataError(
            f"could not load dataset {name!r}"
            + (f" (config {config!r})" if config else "")
            + f", split {split!r}, from the Hugging Face hub: {_one_line(error)}. Check the name and your network, "
            "or pass a local .txt/.json/.jsonl file"
        ) from None
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return _column(dataset, text_field, f"dataset {name!r}")


def _looks_like_path(name: str) -> bool:
    return name.endswith(LOCAL_SUFFIXES) or name.startswith((".", "/", "~")) or Path(name).exists()


def load_text_documents(
    dataset_name: str | Path | Any,
    dataset_config: str | None = None,
    split: str = "train",
    text_field: str = "text",
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    cache_dir: str | Path | None = None,
) -> list[str]:
    """The documents of one split of a corpus, blank ones dropped.

    dataset_name: "tinyshakespeare", "python-stdlib", a local file or folder, a `datasets.Dataset` /
    `DatasetDict`, or a hub name. Sources without the asked-for validation split (the built-in corpora, local
    files) give their deterministic tail: the last `val_fraction` of the documents, or of the characters of a
    single document.
    max_samples keeps the first N documents.
    """
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not isinstance(dataset_name, str | Path):
        documents = _dataset_documents(dataset_name, split, text_field)
    elif str(dataset_name).lower() == TINYSHAKESPEARE:
        documents = [tinyshakespeare_split(split, val_fraction)]
    elif is_python_stdlib(dataset_name):
        documents = _split_documents(_python_stdlib_documents(), split, val_fraction)
    elif _looks_like_path(str(dataset_name)):
        path = Path(dataset_name).expanduser()
        if not path.exists():
            raise DataError(f"data file or folder {str(path)!r} does not exist")
        # blank documents go before the split, as prepare-data drops them: both paths hold out the same ones
        local = [doc for doc in _local_documents(path, text_field, cache_root) if doc.strip()]
        documents = _split_documents(local, split, val_fraction)
    else:
        documents = _hub_documents(str(dataset_name), dataset_config, split, text_field, max_samples)
    if max_samples is not None:
        documents = documents[:max_samples]
    documents = [doc for doc in documents if doc.strip()]
    if not documents:
        raise DataError(f"the {split} split of {_describe(dataset_name)} holds no text")
    return documents


def _dataset_documents(dataset: Any, split: str, text_field: str) -> list[str]:
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise DataError(f"the DatasetDict has no split {split!r}; it has {list(dataset)}")
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise DataError(f"dataset_name must be a name, a path or a datasets.Dataset, got {type(dataset).__name__}")
    return _column(dataset, text_field, "the given dataset")


def _describe(source: Any) -> str:
    return repr(str(source)) if isinstance(source, str | Path) else f"the given {type(source).__name__}"


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


# --- tokens to training windows -------------------------------------------------------------------------------


def make_dataloader(
    tokens: np.ndarray, block_size: int, batch_size: int, shuffle: bool = True, seed: int = 1337
) -> DataLoader:
    """A DataLoader of `TokenBlockDataset` windows; shuffling is seeded, so runs are repeatable."""
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    dataset = TokenBlockDataset(tokens, block_size)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def fit_if_needed(tokenizer: BaseTokenizer, documents: Sequence[str]) -> BaseTokenizer:
    """Fit a tokenizer that learns its vocabulary (the character tokenizer) and has none yet."""
    if getattr(tokenizer, "is_fitted", True) is False:
        tokenizer.fit(documents)
    return tokenizer


def prepare_causal_lm_dataset(
    texts: str | Sequence[str],
    tokenizer: BaseTokenizer,
    block_size: int,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 1337,
    use_cache: bool = False,
    cache_dir: str | Path | None = None,
) -> DataLoader:
    """Batches of ``input_ids`` and ``labels`` (both (B, block_size) long) from in-memory texts.

    An unfitted character tokenizer is fitted on `texts` first, so ``tokenizer.vocab_size`` is known after
    this call. use_cache keeps the token stream on disk (worth it for large corpora).
    """
    documents = [texts] if isinstance(texts, str) else list(texts)
    bad = next((d for d in documents if not isinstance(d, str)), None)
    if bad is not None:
        raise DataError(f"texts must be strings, got a {type(bad).__name__}")
    documents = [d for d in documents if d]
    if not documents:
        raise DataError("texts is empty: give at least one non-empty string")
    fit_if_needed(tokenizer, documents)
    tokens = (
        cached_token_array(documents, tokenizer, cache_dir) if use_cache else tokenize_documents(documents, tokenizer)
    )
    return make_dataloader(tokens, block_size, batch_size, shuffle=shuffle, seed=seed)


def load_corpus_tokens(
    dataset_name: str | Path | Any,
    tokenizer: BaseTokenizer,
    split: str = "train",
    dataset_config: str | None = None,
    text_field: str = "text",
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
) -> np.ndarray | ShardedTokens:
    """The token stream of one split (cached on disk), fitting an unfitted tokenizer on the train split.

    A directory written by `cleangpt prepare-data` is read from its shards instead (see `prepared_data`); the
    tokenizer must then be the one it was prepared with.
    """
    if isinstance(dataset_name, str | Path) and is_prepared_dir(dataset_name):
        corpus = PreparedCorpus(dataset_name)
        corpus.check_tokenizer(tokenizer)
        return corpus.split(_split_name(split), val_fraction, max_samples)
    source = {
        "dataset_config": dataset_config,
        "text_field": text_field,
        "max_samples": max_samples,
        "val_fraction": val_fraction,
        "cache_dir": cache_dir,
    }
    documents = load_text_documents(dataset_name, split=split, **source)
    if getattr(tokenizer, "is_fitted", True) is False:
        tokenizer.fit(_vocabulary_text(dataset_name, split, documents, source))
    if use_cache:
        return cached_token_array(documents, tokenizer, cache_dir)
    return tokenize_documents(documents, tokenizer)


def _vocabulary_text(dataset_name: Any, split: str, documents: list[str], source: dict[str, Any]) -> list[str]:
    """The text a learned vocabulary (the character tokenizer's) is fitted on, the same whichever split is asked
    for, since both splits must share ids: the training split; but all of python-stdlib, whose validation
    files hold characters that no training file has (box-drawing characters), as nanoGPT's shakespeare_char
    fits on all of its text, and as `cleangpt prepare-data` fits on the whole source (so both give one
    vocabulary)."""
    if is_python_stdlib(dataset_name):
        return _python_stdlib_documents()
    return documents if _is_train(split) else load_text_documents(dataset_name, split=TRAIN_SPLIT, **source)


def _is_train(split: str) -> bool:
    return _SPLIT_ALIASES.get(split.lower()) == TRAIN_SPLIT


def load_and_prepare_data(
    dataset_name: str | Path | Any,
    dataset_config: str | None = None,
    tokenizer: BaseTokenizer | None = None,
    max_samples: int | None = None,
    max_seq_length: int = 128,
    batch_size: int = 8,
    split: str = "train",
    text_field: str = "text",
    shuffle: bool | None = None,
    seed: int = 1337,
    val_fraction: float = 0.1,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
) -> tuple[DataLoader, BaseTokenizer]:
    """A DataLoader of ``max_seq_length`` windows over one split of a dataset, and the tokenizer used.

    tokenizer: None gives a character tokenizer fitted on the training text. shuffle: None shuffles the
    train split only. See `load_text_documents` for the accepted sources and `TokenBlockDataset` for the windows.
    """
    if tokenizer is None:
        from cleangpt_core.tokenizers.factory import create_tokenizer

        tokenizer = create_tokenizer("character")
    tokens = load_corpus_tokens(
        dataset_name,
        tokenizer,
        split=split,
        dataset_config=dataset_config,
        text_field=text_field,
        max_samples=max_samples,
        val_fraction=val_fraction,
        use_cache=use_cache,
        cache_dir=cache_dir,
    )
    if shuffle is None:
        shuffle = _is_train(split)
    return make_dataloader(tokens, max_seq_length, batch_size, shuffle=shuffle, seed=seed), tokenizer
