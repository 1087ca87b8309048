"""Documents streamed from a corpus of any size, cut into work units that tokenizer processes can take.

A source is a local file (.txt, .jsonl, .json, .parquet), a folder of them (read in sorted order), the
embedded Tiny Shakespeare, or a Hugging Face dataset read with ``streaming=True``; nothing is loaded whole
(but a .json list, which only a full parse can read: JSON Lines is the streaming format). For a .txt or .jsonl
file the main process only finds where units end (reading the file only around each cut) and a unit is a
byte range; the worker that tokenizes it reads the bytes, hashes, decodes and parses them, so the text
never goes through the main process or a pipe. Parquet and the hub give batches of strings.

- A .txt file is one document. It is read in pieces of about `UNIT_BYTES`, each cut just before a space that
  follows a non-space character: no GPT-2-style pre-token spans such a cut, so the pieces tokenize to the
  ids of the whole text for GPT-2-style byte-level BPE and for character tokenizers (a tokenizer that marks
  the start of a text, such as SentencePiece's, would see each piece as a new start).
- A .jsonl line, a .json list item, a Parquet row or a hub record is one document (its `text_field`).
- python-stdlib (`python_stdlib`, the running Python's standard library): each of its .py files is read as a .txt.
- Documents that are empty or only whitespace are dropped, as the in-memory loader drops them.

The unit decomposition is a pure function of the source, so a resumed prepare sees the same units again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from cleangpt_core.data import python_stdlib
from cleangpt_core.errors import DataError

UNIT_BYTES = 1 << 20  # about 1 MB of text per unit: large enough to amortise IPC, small enough to stay in memory
# A unit is never longer than this many `UNIT_BYTES`, whatever its lines: tokenizing holds about 50 bytes per
# byte of a unit, so a unit as long as a file without spaces or newlines would not fit in memory.
MAX_UNIT_SCALE = 4
FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")
_SCAN_BYTES = 1 << 16  # what the main process reads at a time, looking for where a unit ends
# Where a unit may end. A .txt piece ends just before a space that follows a non-space byte: no GPT-2
# pre-token holds a non-space followed by a space (a space only ever starts one), and the one lookahead of
# its pattern looks at whitespace, so pieces cut there tokenize as the whole text does. A JSON Lines unit
# ends just after a newline.
_UNIT_ENDS = {"text": re.compile(rb"(?<=\S)(?= )"), "jsonl": re.compile(rb"\n")}


@dataclass(frozen=True)
class WorkUnit:
    """One piece of a corpus for one tokenizer call: a byte range of a file, or a batch of already-read texts.

    kind: "text" (a piece of a .txt document), "jsonl" (whole lines of a JSON Lines file) or "texts".
    origin, start: the file (or dataset) and where in it the unit starts: the byte offset of a "text" or
    "jsonl" unit, which is the `size` bytes of file `origin` from there; the first record of "texts".
    continues: the unit's first document continues the previous unit's last one (a long .txt file).
    size: bytes of source text (the MB/s of the progress bar).
    texts: the texts of a "texts" unit.
    forced: the unit ends where no safe cut was found in reach (text without spaces): the tokens around its end
    may differ from those of the whole text.
    """

    kind: Literal["text", "jsonl", "texts"]
    origin: str
    start: int
    continues: bool
    size: int
    texts: tuple[str, ...] = ()
    forced: bool = False


def read_unit(unit: WorkUnit, text_field: str) -> tuple[bytes, list[str]]:
    """A unit's digest (chained over all units it is the corpus fingerprint) and its documents.

    Blank documents are dropped, except a continuing .txt piece, which is part of one.
    """
    if unit.kind == "texts":
        return _texts_digest(unit.texts), [text for text in unit.texts if text.strip()]
    data = unit_bytes(unit)
    digest = _bytes_digest(unit.kind, data)
    if unit.kind == "text":
        text = decode_utf8(data, unit.origin, offset=unit.start)
        return digest, [text] if unit.continues or text.strip() else []
    return digest, [text for text in _jsonl_texts(data, unit.origin, unit.start, text_field) if text.strip()]


def unit_digest(unit: WorkUnit) -> bytes:
    """The digest of `read_unit`, without decoding or parsing."""
    if unit.kind == "texts":
        return _texts_digest(unit.texts)
    return _bytes_digest(unit.kind, unit_bytes(unit))


def _bytes_digest(kind: str, data: bytes) -> bytes:
    digest = hashlib.sha256(kind.encode())
    digest.update(data)
    return digest.digest()


def _texts_digest(texts: tuple[str, ...]) -> bytes:
    digest = hashlib.sha256(b"texts")
    for text in texts:
        data = text.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()


def unit_bytes(unit: WorkUnit) -> bytes:
    """The bytes of a "text" or "jsonl" unit, read from its file."""
    try:
        with open(unit.origin, "rb") as file:
            file.seek(unit.start)
            data = file.read(unit.size)
    except OSError as error:
        raise DataError(f"could not read {unit.origin} ({error.strerror or error})") from None
    if len(data) != unit.size:
        raise DataError(f"{unit.origin} changed while it was being prepared (it is shorter now); run it again")
    return data


def decode_utf8(data: bytes, what: str, offset: int = 0) -> str:
    """`data` as text, or an error naming `what`, the bad byte and its offset (`data` starts at `offset`)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{what} is not valid UTF-8 (byte {data[error.start]:#04x} at offset {offset + error.start}); "
            "re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _jsonl_texts(data: bytes, path: str, start: int, text_field: str) -> list[str]:
    texts = []
    for number, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:  # orjson parses at about three times the speed of the standard library
            text = orjson.loads(line).get(text_field)
        except (orjson.JSONDecodeError, AttributeError):
            text = None
        if not isinstance(text, str):
            # Anything else goes through the standard library's parser, which decides and words the errors:
            # it takes what orjson refuses (lone surrogates from escapes such as \ud800, NaN, a byte-order mark).
            location = _JsonlLine(path, start, number)
            try:
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise DataError(f"{location}: not valid JSON ({error})") from None
            except RecursionError:
                raise DataError(f"{location}: the record nests too deeply to read; flatten it") from None
            text = record_text(record, text_field, location)
        texts.append(text)
    return texts


@dataclass(frozen=True)
class _JsonlLine:
    """Line `number` of the unit at byte `start` of file `path`, for an error message. The file's line number
    is counted only when a message shows it, so that cutting a file into units never reads all of it."""

    path: str
    start: int
    number: int

    def __str__(self) -> str:
        lines, read = 1 + self.number, 0
        with open(self.path, "rb") as file:
            while read < self.start and (block := file.read(min(1 << 22, self.start - read))):
                lines += block.count(b"\n")
                read += len(block)
        return f"{self.path} line {lines}"


def record_text(record: Any, text_field: str, location: object) -> str:
    """The text of one record, or a one-line error naming the record (`location`, as str() gives it) and the field."""
    if not isinstance(record, dict):
        raise DataError(f"{location}: a record must be a JSON object with a {text_field!r} field")
    if text_field not in record:
        raise DataError(
            f"{location}: the record has no field {text_field!r} (it has {sorted(record)}); "
            "fix the record, or name the text field with --text-field"
        )
    text = record[text_field]
    if text is None:
        return ""  # a null text is an empty document, as in Parquet and on the hub
    if not isinstance(text, str):
        raise DataError(f"{location}: field {text_field!r} holds {type(text).__name__}, not text")
    return text


# --- sources --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentSource:
    """Where documents come from: local files, or a Hugging Face dataset streamed from the hub."""

    name: str  # what the user gave, resolved (an absolute path for local sources)
    text_field: str = "text"
    dataset_config: str | None = None
    split: str = "train"
    # python-stdlib's fingerprint when the source is that corpus: `name` is then the standard-library folder,
    # read by python_stdlib's rule (its .py files, less tests), and the index records the fingerprint
    builtin: str | None = None

    @classmethod
    def from_argument(
        cls, source: str | Path, text_field: str = "text", dataset_config: str | None = None, split: str = "train"
    ) -> DocumentSource:
        """A source from a command-line argument: "tinyshakespeare" (embedded), "python-stdlib", a path, else a hub
        dataset name."""
        if python_stdlib.is_python_stdlib(source):
            root, fingerprint = python_stdlib.stdlib_root().resolve(), python_stdlib.stdlib_fingerprint()
            return cls(str(root), text_field, dataset_config, split, builtin=fingerprint)
        if str(source).lower() == "tinyshakespeare":
            source = str(resources.files("cleangpt_core").joinpath("data", "tinyshakespeare.txt"))
        path = Path(source).expanduser()
        local = path.exists() or str(source).startswith((".", "/", "~")) or str(source).endswith(FILE_SUFFIXES)
        if local and not path.exists():
            raise DataError(f"data file or folder {str(path)!r} does not exist")
        name = str(path.resolve()) if local else str(source)
        return cls(name, text_field, dataset_config, split)

    @property
    def is_local(self) -> bool:
        """Whether the documents come from local files."""
        return Path(self.name).is_absolute()

    def describe(self) -> dict[str, Any]:
        """What the source is, as the index records it."""
        return {
            "source": self.builtin or self.name,
            "text_field": self.text_field,
            "dataset_config": self.dataset_config,
            "split": None if self.is_local else self.split,
        }

    def files(self) -> list[Path]:
        """The local files, in the order their documents are read."""
        path = Path(self.name)
        if self.builtin is not None:
            return python_stdlib.corpus_files(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in FILE_SUFFIXES)
            if not files:
                raise DataError(f"folder {self.name!r} holds no {'/'.join(FILE_SUFFIXES)} files")
            return files
        if path.suffix not in FILE_SUFFIXES:
            raise DataError(f"{self.name!r}: use a {', '.join(FILE_SUFFIXES)} file, or a folder of them")
        return [path]

    def total_bytes(self) -> int | None:
        """Bytes of the local files (the progress bar's total), or None for a hub dataset."""
        return sum(file.stat().st_size for file in self.files()) if self.is_local else None

    def units(self) -> Iterator[WorkUnit]:
        """The work units of the whole source, in order."""
        if not self.is_local:
            yield from _hub_units(self)
            return
        for file in self.files():
            if file.suffix in (".txt", ".jsonl") or self.builtin is not None:
                yield from _byte_range_units(file, "jsonl" if file.suffix == ".jsonl" else "text")
            elif file.suffix == ".json":
                yield from _json_units(file, self.text_field)
            else:
                yield from _parquet_units(file, self.text_field)


def _byte_range_units(path: Path, kind: Literal["text", "jsonl"]) -> Iterator[WorkUnit]:
    """The units of a .txt or .jsonl file: byte ranges of about `UNIT_BYTES`, each ending where `_UNIT_ENDS`
    allows. A .txt file is one document, so its pieces after the first continue it, and an empty one is still
    a (blank) unit. No unit is longer than `MAX_UNIT_SCALE` units: a .txt stretch with no safe end is cut at a
    character boundary (`forced`), and a longer JSON Lines record is refused."""
    one_document = kind == "text"
    with path.open("rb") as file:
        offset, end = 0, os.fstat(file.fileno()).st_size
        while end - offset > UNIT_BYTES:
            limit = offset + MAX_UNIT_SCALE * UNIT_BYTES
            found = _unit_end(file, offset + UNIT_BYTES, kind, limit)
            if found is None:
                break  # the end of the file comes first
            cut, forced = found
            if forced and kind == "jsonl":
                raise DataError(
                    f"{path}: the line running through bytes {offset + UNIT_BYTES:,} to {limit:,} is longer than "
                    f"{limit - offset - UNIT_BYTES:,} bytes, too long for one JSON Lines record to be tokenized in "
                    "bounded memory; put such a document in a .txt file"
                )
            if forced:
                cut = _character_start(file, cut)
            yield WorkUnit(kind, str(path), offset, one_document and offset > 0, cut - offset, forced=forced)
            offset = cut
        if offset < end or (one_document and offset == 0):
            yield WorkUnit(kind, str(path), offset, one_document and offset > 0, end - offset)


def _unit_end(file: BinaryIO, at_least: int, kind: Literal["text", "jsonl"], limit: int) -> tuple[int, bool] | None:
    """Where the first unit end of `kind` from `at_least` on lies, and False; ``(limit, True)`` if there is none up
    to `limit` and the file goes on; None if the file ends first. Reads the file only up to there.

    Each read starts one byte early, for the one byte before a cut that the .txt rule looks at.
    """
    position = max(at_least, 1)
    while position < limit:
        file.seek(position - 1)
        block = file.read(_SCAN_BYTES + 1)
        found = _UNIT_ENDS[kind].search(block, 1)
        if found is not None and position - 1 + found.end() <= limit:
            return position - 1 + found.end(), False
        if found is not None or len(block) <= _SCAN_BYTES:
            break  # the end lies beyond the limit, or the file ends
        position += _SCAN_BYTES
    file.seek(limit)
    return (limit, True) if file.read(1) else None


def _character_start(file: BinaryIO, position: int) -> int:
    """`position`, moved back to the start of the UTF-8 character it falls in (continuation bytes are 10xxxxxx)."""
    file.seek(position - 3)
    before = file.read(4)
    back = 0
    while back < 3 and before[3 - back] & 0xC0 == 0x80:
        back += 1
    return position - back


def _batched_texts(origin: str, texts: Iterator[str]) -> Iterator[WorkUnit]:
    batch: list[str] = []
    first = size = 0
    for number, text in enumerate(texts):
        if not batch:
            first = number
        batch.append(text)
        size += len(text)
        if size >= UNIT_BYTES:
            yield WorkUnit("texts", origin, first, False, size, texts=tuple(batch))
            batch, size = [], 0
    if batch:
        yield WorkUnit("texts", origin, first, False, size, texts=tuple(batch))


def _json_units(path: Path, text_field: str) -> Iterator[WorkUnit]:
    # A JSON list has to be parsed whole; JSON Lines (.jsonl) is the streaming format for large corpora.
    try:
        records = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error}); large corpora belong in .jsonl files") from None
    except RecursionError:
        raise DataError(f"{path}: the JSON nests too deeply to read; flatten it") from None
    if not isinstance(records, list):
        records = [records]
    yield from _batched_texts(
        str(path), (record_text(r, text_field, f"{path} item {i}") for i, r in enumerate(records))
    )


def _parquet_units(path: Path, text_field: str) -> Iterator[WorkUnit]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError...
        raise DataError(f"{path}: not a readable Parquet file ({type(error).__name__}: {error})") from None
    columns = parquet.schema_arrow.names
    if text_field not in columns:
        raise DataError(f"{path} has no column {text_field!r} (its columns are {columns}); name it with --text-field")

    def texts() -> Iterator[str]:
        row = 0
        for batch in parquet.iter_batches(batch_size=4096, columns=[text_field]):
            for value in batch.column(0).to_pylist():
                if value is not None and not isinstance(value, str):
                    raise DataError(f"{path} row {row}: column {text_field!r} holds {type(value).__name__}, not text")
                yield value or ""
                row += 1

    yield from _batched_texts(str(path), texts())


def _hub_units(source: DocumentSource) -> Iterator[WorkUnit]:
    import datasets

    where = f"dataset {source.name!r}" + (f" (config {source.dataset_config!r})" if source.dataset_config else "")
    try:
        stream = datasets.load_dataset(source.name, source.dataset_config, split=source.split, streaming=True)
        records = iter(stream)
    except Exception as error:  # offline, unknown name, config or split: all reported the same way
        raise DataError(
            f"could not stream {where}, split {source.split!r}, from the Hugging Face hub "
            f"({type(error).__name__}: {' '.join(str(error).split())[:300]}); check the name and your network, "
            "or give a local file or folder"
        ) from None
    yield from _batched_texts(
        where, (record_text(record, source.text_field, f"{where} record {i}") for i, record in enumerate(records))
    )
