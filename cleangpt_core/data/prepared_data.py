"""Reading a prepared-data directory (written by `cleangpt prepare-data`) as the token stream of a split.

A directory holds::

    index.json            shards and their token counts, dtype, documents, eos, tokenizer, fingerprint
    shard_000000.bin ...  raw token ids (uint16 where the vocabulary fits, else uint32), all but the last
                          holding exactly ``shard_tokens`` ids; together one stream
    documents.bin         int64: where each document starts in the stream
    tokenizer/            the tokenizer the ids come from (save_pretrained)

The stream is every document in source order with the tokenizer's eos id between documents (none after
the last), exactly what the in-memory loader builds. The validation split is the tail of the documents,
chosen with the in-memory loader's rule at training time (so ``data.val_fraction`` still applies); a
corpus of one document is split by tokens instead. Shards are read through memory maps, at most a few
open at once, so memory stays bounded whatever the corpus size.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from cleangpt_core.data.python_stdlib import is_python_stdlib, stdlib_fingerprint
from cleangpt_core.errors import DataError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer

INDEX_FILE = "index.json"
DOCUMENTS_FILE = "documents.bin"
TOKENIZER_DIR = "tokenizer"
FORMAT = "cleangpt-token-shards"
FORMAT_VERSION = 1
DOCUMENT_DTYPE = np.dtype("<i8")
MAX_OPEN_SHARDS = 4


def shard_name(number: int) -> str:
    """The file name of shard `number`."""
    return f"shard_{number:06d}.bin"


def is_prepared_dir(path: str | Path) -> bool:
    """Whether `path` is a directory written by `cleangpt prepare-data` (it has an index.json)."""
    path = Path(path).expanduser()
    return path.is_dir() and (path / INDEX_FILE).is_file()


def data_fingerprint(dataset: Any) -> str | None:
    """What a run records of its data and checks on resume: the fingerprint of a prepared-data directory's
    corpus and tokenizer, or python-stdlib's (which names the Python version); None for any other dataset."""
    if is_python_stdlib(dataset):
        return stdlib_fingerprint()
    if not isinstance(dataset, str | Path) or not is_prepared_dir(dataset):
        return None
    return str(read_index(Path(dataset).expanduser())["fingerprint"]["combined"])


def held_out_documents(count: int, val_fraction: float) -> int:
    """How many documents at the tail of a corpus of `count` documents are its validation split."""
    return max(1, round(count * val_fraction))


class ShardedTokens:
    """Tokens ``[start, stop)`` of a stream stored as shard files, sliced like a 1-D numpy array.

    A slice returns a new array (copied out of at most two shards for a window). Shards are mapped on
    first use and the least recently used is unmapped beyond `MAX_OPEN_SHARDS`, so resident memory stays
    within a few shards even when windows are drawn from all over a corpus larger than memory.
    """

    def __init__(
        self,
        paths: list[Path],
        counts: list[int],
        dtype: np.dtype,
        start: int = 0,
        stop: int | None = None,
        vocab_size: int | None = None,
    ):
        self.paths, self.counts, self.dtype = list(paths), list(counts), np.dtype(dtype)
        self.vocab_size = vocab_size  # ids must lie below it: a damaged shard is named, never an IndexError
        self._offsets = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        total = int(self._offsets[-1])
        self.start, self.stop = start, total if stop is None else stop
        if not 0 <= self.start <= self.stop <= total:
            raise ValueError(f"token range [{start}, {stop}) lies outside the stream of {total} tokens")
        self._open: OrderedDict[int, np.memmap] = OrderedDict()

    def __len__(self) -> int:
        return self.stop - self.start

    def view(self, start: int, stop: int) -> ShardedTokens:
        """Tokens ``[start, stop)`` of this range, sharing the shard files."""
        return ShardedTokens(
            self.paths, self.counts, self.dtype, self.start + start, self.start + stop, self.vocab_size
        )

    def __getitem__(self, key: int | slice) -> np.ndarray:
        if isinstance(key, int | np.integer):
            index = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= index < len(self):
                raise IndexError(f"token {key} is outside a stream of {len(self)} tokens")
            return self._read(self.start + index, self.start + index + 1)[0]
        begin, end, step = key.indices(len(self))
        if step != 1:
            raise ValueError("a sharded token stream is sliced with step 1 only")
        return self._read(self.start + begin, self.start + max(begin, end))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        tokens = self._read(self.start, self.stop)
        return tokens if dtype is None else tokens.astype(dtype)

    def _read(self, begin: int, end: int) -> np.ndarray:
        pieces = []
        shard = int(np.searchsorted(self._offsets, begin, side="right")) - 1
        while begin < end:
            base = int(self._offsets[shard])
            take = min(end, int(self._offsets[shard + 1])) - begin
            piece = self._shard(shard)[begin - base : begin - base + take]
            if self.vocab_size is not None and len(piece) and int(piece.max()) >= self.vocab_size:
                raise DataError(
                    f"shard {self.paths[shard]} holds id {int(piece.max())}, beyond the vocabulary of "
                    f"{self.vocab_size:,} ids; the shard is damaged or was replaced: prepare the data again"
                )
            pieces.append(piece)
            begin += take
            shard += 1
        if not pieces:
            return np.empty(0, dtype=self.dtype)
        return np.array(pieces[0]) if len(pieces) == 1 else np.concatenate(pieces)

    def _shard(self, number: int) -> np.memmap:
        if number in self._open:
            self._open.move_to_end(number)
            return self._open[number]
        tokens = np.memmap(self.paths[number], dtype=self.dtype, mode="r", shape=(self.counts[number],))
        self._open[number] = tokens
        if len(self._open) > MAX_OPEN_SHARDS:
            self._open.popitem(last=False)  # dropping the last reference unmaps it
        return tokens

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get the file names, never a pickled copy of mapped data
        return {**self.__dict__, "_open": OrderedDict()}


class PreparedCorpus:
    """A prepared-data directory, checked against its index when opened."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.index = read_index(self.directory)
        self.dtype = np.dtype(self.index["dtype"])
        shards = self.index["shards"]
        self.paths = [_inside(self.directory, shard["file"]) for shard in shards]
        self.counts = [shard["tokens"] for shard in shards]
        for path, count in zip(self.paths, self.counts, strict=True):
            check_shard(path, count, self.dtype)
        self.num_documents = int(self.index["documents"])
        self._check_documents_file()

    @property
    def tokenizer_dir(self) -> Path:
        """Where the tokenizer of the ids is saved."""
        return self.directory / TOKENIZER_DIR

    def tokens(self) -> ShardedTokens:
        """The whole stream, its ids checked against the vocabulary as they are read."""
        return ShardedTokens(self.paths, self.counts, self.dtype, vocab_size=self.index["tokenizer"]["vocab_size"])

    def check_tokenizer(self, tokenizer: BaseTokenizer) -> None:
        """Fail unless `tokenizer` maps text to ids exactly as the tokenizer the data was prepared with."""
        prepared = self.index["tokenizer"]
        fitted = getattr(tokenizer, "is_fitted", True) is not False  # an unfitted one cannot be saved to compare
        if fitted and tokenizer.fingerprint() == prepared["fingerprint"]:
            if tokenizer.vocab_size != prepared["vocab_size"] or tokenizer.corpus_dtype != self.dtype:
                raise DataError(
                    f"{self.directory / INDEX_FILE} says {prepared['vocab_size']:,} ids stored as {self.dtype.name}, "
                    f"but its tokenizer has {tokenizer.vocab_size:,} ids ({tokenizer.corpus_dtype.name}): the index "
                    "is damaged; prepare the data again"
                )
            return
        run = f"{type(tokenizer).__name__}, {tokenizer.vocab_size:,} ids" if fitted else "an unfitted character one"
        raise DataError(
            f"the run's tokenizer ({run}) is not the one {self.directory} was prepared with ({prepared['type']!r}, "
            f"{prepared['vocab_size']:,} ids, saved in {self.tokenizer_dir}); train with that tokenizer "
            f"(tokenizer.name={prepared['type']} and its options), or prepare the data again with yours"
        )

    def split(self, split: str, val_fraction: float, max_documents: int | None = None) -> ShardedTokens:
        """The tokens of the train or validation split: the documents before, or in, the held-out tail.

        max_documents keeps the split's first N documents (``data.max_samples``).
        """
        tokens, count = self.tokens(), self.num_documents
        if count == 1:  # one document: split by tokens, as the in-memory loader splits by characters
            cut = int(len(tokens) * (1.0 - val_fraction))
            return tokens.view(0, cut) if split == "train" else tokens.view(cut, len(tokens))
        first_held_out = count - held_out_documents(count, val_fraction)
        first, last = (0, first_held_out) if split == "train" else (first_held_out, count)
        if max_documents is not None:
            last = min(last, first + max_documents)
        return tokens.view(self._document_start(first), self._document_end(last - 1))

    def _document_start(self, number: int) -> int:
        starts = np.memmap(self.directory / DOCUMENTS_FILE, dtype=DOCUMENT_DTYPE, mode="r")
        return int(starts[number])

    def _document_end(self, number: int) -> int:
        """Where document `number` ends: before the eos separating it from the next, or at the stream's end."""
        if number + 1 == self.num_documents:
            return sum(self.counts)
        return self._document_start(number + 1) - (1 if self.index["eos"]["id"] is not None else 0)

    def _check_documents_file(self) -> None:
        path = self.directory / DOCUMENTS_FILE
        expected = self.num_documents * DOCUMENT_DTYPE.itemsize
        size = path.stat().st_size if path.is_file() else None
        if size != expected:
            raise DataError(
                f"{path}: {'missing' if size is None else f'{size} bytes'}, but {self.directory / INDEX_FILE} "
                f"lists {self.num_documents} documents ({expected} bytes); prepare the data again"
            )


def read_index(directory: Path) -> dict[str, Any]:
    """The index of a prepared-data directory, with errors that name the file."""
    path = directory / INDEX_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{directory} is not a prepared-data directory: it has no {INDEX_FILE}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path} is corrupt (not valid JSON: {error}); prepare the data again") from None
    except RecursionError:
        raise DataError(f"{path} is corrupt (it nests too deeply); prepare the data again") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path} is not the index of cleanGPT token shards")
    if index.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path} has format version {index.get('format_version')}; this cleanGPT reads version "
            f"{FORMAT_VERSION}: prepare the data again"
        )
    problem = _index_problem(index)
    if problem is not None:
        raise DataError(f"{path} is damaged ({problem}); prepare the data again")
    return index


def _index_problem(index: dict[str, Any]) -> str | None:
    """What is wrong with the fields of an index that the readers rely on, or None."""

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if index.get("dtype") not in ("uint16", "uint32"):
        return f"dtype {index.get('dtype')!r} is not uint16 or uint32"
    for key in ("tokens", "documents", "shard_tokens"):
        if not count(index.get(key)):
            return f"{key!r} is {index.get(key)!r}, not a count"
    shards = index.get("shards")
    if not isinstance(shards, list) or not all(
        isinstance(s, dict) and isinstance(s.get("file"), str) and count(s.get("tokens")) for s in shards
    ):
        return "'shards' must be a list of {file, tokens}"
    if sum(shard["tokens"] for shard in shards) != index["tokens"]:
        return "the shards' token counts do not add up to 'tokens'"
    eos, tokenizer, fingerprint = index.get("eos"), index.get("tokenizer"), index.get("fingerprint")
    if not isinstance(eos, dict) or not (eos.get("id") is None or count(eos.get("id"))):
        return "'eos' must hold an 'id' (a count or null)"
    if not isinstance(tokenizer, dict) or not count(tokenizer.get("vocab_size")) or "fingerprint" not in tokenizer:
        return "'tokenizer' must hold 'vocab_size' and 'fingerprint'"
    if not isinstance(fingerprint, dict) or not isinstance(fingerprint.get("combined"), str):
        return "'fingerprint' must hold 'combined'"
    if not isinstance(index.get("settings"), dict):
        return "'settings' must be a mapping"
    return None


def _inside(directory: Path, name: str) -> Path:
    """The file `name` of a prepared folder; a name that leads elsewhere (absolute, ``..``, a link out) is refused,
    so a planted index can never make training read a file outside the folder."""
    path = directory / name
    if Path(name).name != name or name in ("", ".", "..") or path.resolve().parent != directory.resolve():
        raise DataError(
            f"{directory / INDEX_FILE} names the shard {name!r}, which is not a file of {directory}; refusing to "
            "read it: prepare the data again"
        )
    return path


def check_shard(path: Path, tokens: int, dtype: np.dtype) -> None:
    """Fail unless the shard file holds exactly `tokens` ids of `dtype`."""
    expected = tokens * dtype.itemsize
    size = path.stat().st_size if path.is_file() else None
    if size != expected:
        found = "is missing" if size is None else f"has {size:,} bytes"
        raise DataError(
            f"shard {path} {found}, but the index says {tokens:,} {dtype.name} tokens ({expected:,} bytes); "
            "the shard is damaged or was replaced: prepare the data again"
        )
