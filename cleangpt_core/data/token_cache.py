"""Token streams of whole corpora, cached on disk as flat integer arrays so a second run never tokenizes.

A cache entry is ``<cache>/tokens/<key>.bin`` (the raw ids, uint16 where the vocabulary fits) and
``<key>.json`` (dtype, length, what it was made from). The key hashes the corpus text and the tokenizer's
saved state, so a changed corpus or a changed tokenizer (another vocabulary, another type) misses the cache.
Entries are read back as read-only numpy memmaps, so even a large corpus costs no memory until it is used.
The cache lives in ``$CLEANGPT_CACHE_DIR`` or ``~/.cache/cleangpt``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cleangpt_core.checkpoints.atomic_write import write_bytes_atomic
from cleangpt_core.data.progress import TokenizationProgress
from cleangpt_core.errors import DataError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer

ENV_CACHE_DIR = "CLEANGPT_CACHE_DIR"
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$CLEANGPT_CACHE_DIR``, else ``~/.cache/cleangpt``."""
    configured = os.environ.get(ENV_CACHE_DIR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "cleangpt"


def corpus_fingerprint(documents: Sequence[str]) -> str:
    """A hash of the documents and their boundaries (["ab", "c"] and ["a", "bc"] differ)."""
    digest = hashlib.sha256()
    for document in documents:
        data = document.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def tokenize_documents(documents: Sequence[str], tokenizer: BaseTokenizer) -> np.ndarray:
    """One flat token stream: the documents in order, separated by the tokenizer's eos token where it has one.

    The separator tells the model where one document ends and an unrelated one begins, as GPT-2 was trained.
    On a terminal it shows the progress bar of `cleangpt prepare-data` (counting characters as bytes).
    """
    pieces = []
    with TokenizationProgress("tokenizing", sum(len(document) for document in documents)) as progress:
        for document in documents:
            if document:
                pieces.append(tokenizer.encode_corpus(document))
                progress.update(len(document), 1, len(pieces[-1]))
    if not pieces:
        raise DataError("the corpus is empty: it has no text to tokenize")
    eos = tokenizer.eos_token_id
    if eos is not None and len(pieces) > 1:
        separator = np.array([eos], dtype=pieces[0].dtype)
        pieces = [part for piece in pieces for part in (piece, separator)][:-1]
    return np.concatenate(pieces).astype(tokenizer.corpus_dtype, copy=False)


def cached_token_array(
    documents: Sequence[str], tokenizer: BaseTokenizer, cache_dir: str | Path | None = None
) -> np.ndarray:
    """The token stream of `documents` (see `tokenize_documents`), read from the cache when it is there."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    corpus_key = corpus_fingerprint(documents)
    tokenizer_key = tokenizer.fingerprint()
    key = hashlib.sha256(f"{CACHE_FORMAT}:{corpus_key}:{tokenizer_key}".encode()).hexdigest()[:32]
    folder = root / "tokens"
    data_path, meta_path = folder / f"{key}.bin", folder / f"{key}.json"
    cached = _read_entry(data_path, meta_path)
    if cached is not None:
        return cached
    tokens = tokenize_documents(documents, tokenizer)
    meta = {
        "format": CACHE_FORMAT,
        "dtype": tokens.dtype.name,
        "length": int(tokens.size),
        "tokenizer_type": tokenizer.tokenizer_type,
        "vocab_size": tokenizer.vocab_size,
        "corpus_sha256": corpus_key,
        "tokenizer_sha256": tokenizer_key,
        "documents": len(documents),
    }
    folder.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, data first: a crash mid-write leaves no entry rather than a truncated one.
    write_bytes_atomic(data_path, tokens.tobytes())
    write_bytes_atomic(meta_path, json.dumps(meta, indent=2).encode())
    return _read_entry(data_path, meta_path)


def _read_entry(data_path: Path, meta_path: Path) -> np.ndarray | None:
    if not (data_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        dtype, length = np.dtype(meta["dtype"]), int(meta["length"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged entry is rebuilt, never trusted
    if meta.get("format") != CACHE_FORMAT or data_path.stat().st_size != length * dtype.itemsize or length == 0:
        return None
    return np.memmap(data_path, dtype=dtype, mode="r", shape=(length,))

