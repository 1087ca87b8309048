"""``cleangpt prepare-data``: a corpus streamed, tokenized in worker processes, written as token shards.

The main process cuts the source into work units (`document_sources`; for local text and JSON Lines only
byte ranges, which the workers read themselves), hands them to `num_proc` workers (at most two units per
worker in flight, so memory does not grow with the corpus) and takes the results back in order. The
workers hash the unit, parse it, and put the eos id before each document, so the main process only appends
a unit's ids to the open shard (dropping the eos before the stream's first document), records where its
documents start, and chains the units' hashes into the corpus fingerprint (so the fingerprint is one of
the source's bytes as cut into units: equal sources give equal fingerprints within a format version).

Crash safety: a shard is written as ``shard_N.bin.tmp`` and renamed when full. After each rename the
state needed to continue (the finished shards and the unit boundary, documents and fingerprint reached
before them) goes atomically into ``prepare-state.json``. A rerun of the same command re-reads the units
before that boundary only to check their fingerprint, tokenizes from there, drops the ids already in
finished shards, and so ends with the same bytes as a run that was never interrupted. The index is written
last; the state file is removed then. Nothing that is finished is ever deleted, by an error or a rerun.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import multiprocessing
import os
import shutil
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cleangpt_core.checkpoints.atomic_write import publish, remove_partials, write_bytes_atomic
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.checkpoints.run_dir import LOCK_FILE, LOCK_OWNER_FILE, folder_lock
from cleangpt_core.data.document_sources import DocumentSource, WorkUnit, read_unit, unit_digest
from cleangpt_core.data.prepared_data import (
    DOCUMENT_DTYPE,
    DOCUMENTS_FILE,
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    TOKENIZER_DIR,
    check_shard,
    read_index,
    shard_name,
)
from cleangpt_core.data.progress import TokenizationProgress
from cleangpt_core.distributed.parent_death import die_with_parent
from cleangpt_core.errors import DataError, TokenizerError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer

STATE_FILE = "prepare-state.json"
DEFAULT_SHARD_TOKENS = 100_000_000  # modded-nanogpt's shard size: 200 MB of uint16 per file
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass
class Boundary:
    """Where the stream stands before a unit: its number, tokens and documents so far, fingerprint so far."""

    unit: int = 0
    tokens: int = 0
    documents: int = 0
    chain: str = hashlib.sha256(b"cleangpt-corpus").hexdigest()


def prepare_data(
    source: DocumentSource,
    tokenizer: BaseTokenizer,
    out_dir: str | Path,
    *,
    num_proc: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Tokenize `source` into shards in `out_dir`, continuing an interrupted run; returns the index.

    num_proc: worker processes (default: the cores this process may use; 1 tokenizes in this process).
    progress: draw the progress bar (None: when stderr is a terminal).
    """
    if shard_tokens < 1:
        raise DataError(f"--shard-tokens must be at least 1, got {shard_tokens}")
    if getattr(tokenizer, "is_fitted", True) is False:
        raise TokenizerError(
            "the character tokenizer has no vocabulary yet and a streamed corpus cannot be fitted on first; "
            "fit one and save it (tokenizer.save_pretrained(dir)), then pass that folder as --tokenizer"
        )
    out = Path(out_dir).expanduser()
    settings = {
        **source.describe(),
        "shard_tokens": shard_tokens,
        "dtype": tokenizer.corpus_dtype.name,
        "tokenizer_fingerprint": tokenizer.fingerprint(),
    }
    _check_out(out, source)
    total_bytes = source.total_bytes()  # also checks the local files exist and have the right suffixes
    created = not out.exists()
    refusal = "{folder} is being prepared by {owner}; wait for that prepare-data to finish, or choose another --out"
    try:
        with folder_lock(out, refusal):
            return _prepare_locked(source, tokenizer, out, settings, total_bytes, num_proc, progress)
    finally:
        if created and out.is_dir() and {p.name for p in out.iterdir()} <= {LOCK_FILE, LOCK_OWNER_FILE}:
            (out / LOCK_FILE).unlink(missing_ok=True)  # nothing was prepared: leave no folder behind
            with suppress(OSError):
                out.rmdir()


def _prepare_locked(
    source: DocumentSource,
    tokenizer: BaseTokenizer,
    out: Path,
    settings: dict[str, Any],
    total_bytes: int | None,
    num_proc: int | None,
    progress: bool | None,
) -> dict[str, Any]:
    """`prepare_data` once this process holds the folder's lock: no other prepare writes or cleans it up."""
    done = _claim(out, settings)
    if done is not None:
        return done
    writer = _ShardWriter(out, settings, tokenizer)
    try:
        with writer.space_for(out / TOKENIZER_DIR):
            tokenizer.save_pretrained(out / TOKENIZER_DIR)
        workers = num_proc or _usable_cores()
        warn = _CutWarnings(tokenizer)
        with TokenizationProgress(f"preparing {out.name}", total_bytes, progress) as bar:
            for unit, result in _tokenized_units(source, tokenizer, out / TOKENIZER_DIR, writer.resume_at, workers):
                warn.check(unit)
                before = writer.position
                documents = writer.add(unit, result)
                bar.update(unit.size, documents, writer.position - before)
        if writer.boundary.documents == 0:
            raise DataError(f"{source.name} holds no text (every document is empty); nothing was prepared")
        return writer.finish()
    except BaseException:
        writer.abandon()
        if writer.finished_shards == 0:
            _remove_own_files(out)  # nothing was finished: leave the folder as it was
        raise


# Text cut where a GPT-2-style pre-tokenizer never joins two pieces; a tokenizer that gives these pieces other
# ids than the whole (merges across spaces, a "▁" prepended to every text) tokenizes a cut document differently.
_CUT_PROBE = ("First Citizen:\nBefore we proceed any", " further, hear me", " speak.\n\nAll:\nSpeak,", " speak.")


class _CutWarnings:
    """Warns, once each, when a document is cut into units in a way that may change its token ids."""

    def __init__(self, tokenizer: BaseTokenizer) -> None:
        self.tokenizer = tokenizer
        self.cut_warned = self.forced_warned = False

    def check(self, unit: WorkUnit) -> None:
        if unit.continues and not self.cut_warned:
            self.cut_warned = True
            try:
                pieces = np.concatenate(self.tokenizer.encode_corpus_batch(list(_CUT_PROBE)))
                exact = np.array_equal(pieces, self.tokenizer.encode_corpus("".join(_CUT_PROBE)))
            except TokenizerError:  # a character vocabulary without the probe's letters: it cuts exactly anyway
                exact = True
            if not exact:
                warnings.warn(
                    f"{unit.origin} holds a document longer than a work unit, and this tokenizer gives pieces of a "
                    "text other ids than the whole text (it merges across spaces or marks the start of a text), so the "
                    "ids at each cut differ from tokenizing the document whole; split such a document into shorter "
                    "ones (JSON Lines records of less than a megabyte) to avoid it",
                    RuntimeWarning,
                    stacklevel=3,
                )
        if unit.forced and not self.forced_warned:
            self.forced_warned = True
            warnings.warn(
                f"{unit.origin} has a stretch of text with no space for over {unit.size:,} bytes (from byte "
                f"{unit.start:,}); it was cut at a character boundary to bound memory, where the ids may differ "
                "from tokenizing the stretch whole",
                RuntimeWarning,
                stacklevel=3,
            )


def _check_out(out: Path, source: DocumentSource) -> None:
    """Refuse, before anything is written, an --out that is a file or lies inside a local source folder (the
    prepare would read its own files as documents)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; choose a folder")
    if not source.is_local:
        return
    folder, target = Path(source.name).resolve(), out.resolve()
    if folder.is_dir() and (target == folder or folder in target.parents):
        raise DataError(
            f"--out {out} lies inside the source folder {source.name}, so its own files would be read as "
            "documents; choose an --out outside it"
        )


def _claim(out: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Check that `out` is new, empty, an interrupted prepare of the same settings, or already done."""
    if (out / INDEX_FILE).is_file():
        index = read_index(out)
        if index["settings"] == settings:
            return index
        raise DataError(
            f"{out} already holds data prepared from {index['settings']['source']!r} with other settings; "
            "choose another --out, or delete the folder to prepare it again"
        )
    state = _read_state(out)
    if state is not None:
        if state["settings"] != settings:
            changed = sorted(k for k in settings if settings[k] != state["settings"].get(k))
            raise DataError(
                f"{out} holds an interrupted prepare with other settings ({', '.join(changed)} differ); rerun it "
                "with the same source, tokenizer and --shard-tokens to continue, or choose another --out"
            )
        return None
    if any(path.name not in (LOCK_FILE, LOCK_OWNER_FILE) for path in out.iterdir()):
        raise DataError(f"{out} exists and is not an empty folder or a prepared-data folder; choose another --out")
    return None


def _remove_own_files(out: Path) -> None:
    shutil.rmtree(out / TOKENIZER_DIR, ignore_errors=True)
    for name in (DOCUMENTS_FILE, STATE_FILE, shard_name(0) + ".tmp"):
        (out / name).unlink(missing_ok=True)


# --- tokenizing in worker processes ---------------------------------------------------------------------------

UnitResult = tuple[bytes, np.ndarray, np.ndarray]  # digest, where each document starts, token ids
# What a worker sends back: the token ids, or how many it left in its unit's slot of `_Slots`.
WorkerResult = tuple[bytes, np.ndarray, np.ndarray | int]

SLOT_BYTES = 8 << 20  # a unit's ids in shared memory: about 1 MB of text gives 0.3M GPT-2 ids (0.6 MB as uint16)

_worker_tokenizer: BaseTokenizer | None = None
_worker_text_field = "text"
_worker_slots: mmap.mmap | None = None


class _Slots:
    """Memory shared with forked workers, where each leaves a unit's ids: no pickling, no pipe for the bulk.

    An anonymous shared map, inherited by the workers and freed with the last process that maps it (a killed
    prepare leaves nothing behind). Unit `n` (counted from the first one handed out) uses slot `n % count`,
    with `count` the units in flight: unit `n` is handed out only after unit `n - count` was written out,
    so a slot is never overwritten while the main process reads it. Ids that do not fit come by pipe.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.memory = mmap.mmap(-1, count * SLOT_BYTES)

    def slot(self, number: int) -> int:
        return number % self.count

    def take(self, result: WorkerResult, number: int, dtype: np.dtype) -> UnitResult:
        """The result of unit `number`, its ids a view of its slot: valid until the next unit is asked for."""
        digest, starts, tokens = result
        if isinstance(tokens, int):
            offset = self.slot(number) * SLOT_BYTES
            tokens = np.frombuffer(self.memory, dtype=dtype, count=tokens, offset=offset)
        return digest, starts, tokens


def _init_worker(
    tokenizer: BaseTokenizer | str, text_field: str, slots: mmap.mmap | None = None, parent: int | None = None
) -> None:
    """Set up a tokenizer worker, or this process when it tokenizes alone (no `parent`).

    parent: the pid of the prepare that started this worker process, which then dies with it.
    """
    global _worker_tokenizer, _worker_text_field, _worker_slots
    if parent is not None:
        die_with_parent(parent)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one Rust thread per worker: the workers are the parallelism
    if isinstance(tokenizer, str):
        from cleangpt_core.tokenizers.factory import from_pretrained

        tokenizer = from_pretrained(tokenizer)
    _worker_tokenizer, _worker_text_field, _worker_slots = tokenizer, text_field, slots


def _tokenize_in_slot(unit: WorkUnit, slot: int) -> WorkerResult:
    """`_tokenize_unit` in a worker: the ids go into shared slot `slot` when they fit."""
    digest, starts, tokens = _tokenize_unit(unit)
    if _worker_slots is None or tokens.nbytes > SLOT_BYTES:
        return digest, starts, tokens
    offset = slot * SLOT_BYTES
    _worker_slots[offset : offset + tokens.nbytes] = memoryview(tokens).cast("B")
    return digest, starts, len(tokens)


def _tokenize_unit(unit: WorkUnit) -> UnitResult:
    """The unit's ids with the eos id before every document that starts in it, and where those start.

    The writer drops the eos before the stream's very first document; everything per document happens
    here, in the workers, so the main process handles a unit with a few array operations.
    """
    tokenizer = _worker_tokenizer
    assert tokenizer is not None, "the worker was not initialised"
    digest, documents = read_unit(unit, _worker_text_field)
    try:
        pieces = list(tokenizer.encode_corpus_batch(documents)) if documents else []
    except TokenizerError as error:  # say which document: the tokenizer only knows a position in one text
        where = "byte" if unit.kind != "texts" else "record"
        raise DataError(f"{unit.origin} (the part from {where} {unit.start}): {error}") from None
    dtype = tokenizer.corpus_dtype
    # the first piece of a continuing unit goes on with the previous unit's last document: no eos, no start
    head = [pieces.pop(0)] if unit.continues and pieces else []
    eos = [] if tokenizer.eos_token_id is None else [np.array([tokenizer.eos_token_id], dtype=dtype)]
    sizes = np.array([len(eos) + len(piece) for piece in pieces], dtype=np.int64)
    starts = sum(map(len, head)) + np.cumsum(sizes) - sizes + len(eos)
    parts = head + [part for piece in pieces for part in (*eos, piece)]
    tokens = np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)
    return digest, starts, tokens


def _tokenized_units(
    source: DocumentSource, tokenizer: BaseTokenizer, saved: Path, resume_at: Boundary, num_proc: int
) -> Iterator[tuple[WorkUnit, UnitResult | None]]:
    """Every unit with its result, in order; units before `resume_at` come with their digest only.

    Forked workers inherit `tokenizer`; spawned ones (where fork does not exist) load it from `saved`.
    """
    units = source.units()
    chain = Boundary().chain
    for _ in range(resume_at.unit):
        unit = next(units, None)
        if unit is None:
            break
        chain = _chained(chain, unit_digest(unit))
        yield unit, None
    if chain != resume_at.chain:
        raise DataError(
            f"{source.name} is not what the interrupted prepare was reading (its first {resume_at.unit} pieces "
            "differ); restore the source, or prepare it into another --out"
        )
    if num_proc <= 1:
        _init_worker(tokenizer, source.text_field)
        for unit in units:
            yield unit, _tokenize_unit(unit)
        return
    # built once here, not once per forked worker (GPT-2's tiktoken twin takes a second to build)
    tokenizer.encode_corpus_batch([""])
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    forked = context.get_start_method() == "fork"
    slots = _Slots(2 * num_proc)  # at most two units per worker in flight
    # forked workers inherit the tokenizer and the shared slots (fork passes them without pickling)
    initargs = (tokenizer, source.text_field, slots.memory) if forked else (str(saved), source.text_field, None)
    initargs += (os.getpid(),)
    # An executor, not multiprocessing.Pool: a worker that dies (the OOM killer, a kill -9) breaks it, and every
    # waiting result raises, where Pool would replace the worker and wait forever for the unit it lost.
    pool = ProcessPoolExecutor(num_proc, mp_context=context, initializer=_init_worker, initargs=initargs)
    try:
        pending: deque[tuple[int, WorkUnit, Future[WorkerResult]]] = deque()
        for number, unit in enumerate(units):
            try:
                future = pool.submit(_tokenize_in_slot, unit, slots.slot(number))
            except BrokenProcessPool:  # a worker died before this unit was queued: the units in flight go first
                while pending:
                    yield _finished(pending.popleft(), slots, tokenizer.corpus_dtype)
                raise _worker_died(unit) from None
            pending.append((number, unit, future))
            if len(pending) >= slots.count:
                yield _finished(pending.popleft(), slots, tokenizer.corpus_dtype)
        while pending:
            yield _finished(pending.popleft(), slots, tokenizer.corpus_dtype)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the units being tokenized finish; the rest are dropped


def _finished(
    submitted: tuple[int, WorkUnit, Future[WorkerResult]], slots: _Slots, dtype: np.dtype
) -> tuple[WorkUnit, UnitResult]:
    """A unit and its result, once its worker is done; a worker that died is one line, and the prepare resumes."""
    number, unit, future = submitted
    try:
        return unit, slots.take(future.result(), number, dtype)
    except BrokenProcessPool:
        raise _worker_died(unit) from None


def _worker_died(unit: WorkUnit) -> DataError:
    return DataError(
        f"a tokenizer worker process died while preparing {unit.origin} (killed, perhaps by the out-of-memory "
        "killer); the finished shards are kept: run the same command again (with fewer --num-proc if memory "
        "is short) to continue"
    )


def _usable_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _chained(chain: str, digest: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(chain) + digest).hexdigest()


# --- writing shards -------------------------------------------------------------------------------------------


class _ShardWriter:
    """Appends documents to the stream: shards, document starts, fingerprint, and the resume state."""

    def __init__(self, out: Path, settings: dict[str, Any], tokenizer: BaseTokenizer) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.settings = out, settings
        self.shard_tokens = settings["shard_tokens"]
        self.dtype = np.dtype(settings["dtype"])
        self.eos = tokenizer.eos_token_id
        self.tokenizer = {
            "type": tokenizer.tokenizer_type,
            "vocab_size": tokenizer.vocab_size,
            "fingerprint": settings["tokenizer_fingerprint"],
            "dir": TOKENIZER_DIR,
        }
        state = _read_state(out)
        self.boundary = Boundary(**state["boundary"]) if state else Boundary()
        self.resume_at = Boundary(**vars(self.boundary))
        self.finished_shards = state["finished_shards"] if state else 0
        for number in range(self.finished_shards):
            check_shard(out / shard_name(number), self.shard_tokens, self.dtype)
        # what a killed run was writing (a shard, or the state or index aside): rewritten from the boundary
        for stale in out.glob("shard_*.bin.tmp"):
            stale.unlink()
        remove_partials(out)
        self.position = self.boundary.tokens  # tokens of the stream so far
        self.written = self.finished_shards * self.shard_tokens  # tokens already on disk in finished shards
        self._shard: BinaryIO | None = None
        self._shard_fill = 0
        self._documents = (out / DOCUMENTS_FILE).open("r+b" if (out / DOCUMENTS_FILE).exists() else "wb")
        self._documents.truncate(self.boundary.documents * DOCUMENT_DTYPE.itemsize)
        self._documents.seek(0, os.SEEK_END)
        if state is None:
            self._save_state(self.boundary)  # marks the folder as a prepare in progress from the first byte

    def add(self, unit: WorkUnit, result: UnitResult | None) -> int:
        """Append one unit's documents (a unit before the resume boundary is skipped); returns how many began."""
        if result is None:
            return 0
        start = Boundary(**vars(self.boundary))
        digest, starts, tokens = result
        finished_before = self.finished_shards
        if len(starts) and start.documents == 0 and self.eos is not None:
            tokens = np.delete(tokens, starts[0] - 1)  # no eos before the stream's first document
            starts = starts - 1
        self._write(self._documents, (self.position + starts).astype(DOCUMENT_DTYPE).tobytes())
        self._append(tokens)
        self.boundary = Boundary(
            start.unit + 1, self.position, start.documents + len(starts), _chained(start.chain, digest)
        )
        if self.finished_shards > finished_before:
            # the unit that finished a shard is re-tokenized on resume: the boundary before it is kept
            self._flush(self._documents)
            self._save_state(start)
        return len(starts)

    def _append(self, tokens: np.ndarray) -> None:
        end = self.position + len(tokens)
        if end <= self.written:  # already in a finished shard (a resumed run catching up)
            self.position = end
            return
        tokens = tokens[max(0, self.written - self.position) :]
        self.position = end
        while len(tokens):
            if self._shard is None:
                self._shard = self._open_shard()
            room = self.shard_tokens - self._shard_fill
            self._write(self._shard, tokens[:room])  # written from the array (or shared slot) itself
            self._shard_fill += min(room, len(tokens))
            self.written += min(room, len(tokens))
            tokens = tokens[room:]
            if self._shard_fill == self.shard_tokens:
                self._close_shard()

    def _open_shard(self) -> BinaryIO:
        self._shard_fill = 0
        return self._tmp_path().open("wb")

    def _tmp_path(self) -> Path:
        return self.out / (shard_name(self.finished_shards) + ".tmp")

    def _close_shard(self) -> None:
        assert self._shard is not None
        self._flush(self._shard)
        self._shard.close()
        self._shard = None
        publish(self._tmp_path(), self.out / shard_name(self.finished_shards))
        self.finished_shards += 1

    def _write(self, file: BinaryIO, data: bytes | np.ndarray) -> None:
        with self.space_for(file.name):
            file.write(data)

    def _flush(self, file: BinaryIO) -> None:
        with self.space_for(file.name):
            file.flush()
            os.fsync(file.fileno())

    @contextmanager
    def space_for(self, name: str | Path) -> Iterator[None]:
        """Turn a full disk (or a file-size limit) into one line that says what is kept and what to do."""
        try:
            yield
        except OSError as error:
            if error.errno not in _NO_SPACE:
                raise
            raise DataError(
                f"no space left to write {name} ({os.strerror(error.errno)}); the {self.finished_shards} "
                "finished shards are kept: free some space and run the same command again to continue"
            ) from None

    def _save_state(self, boundary: Boundary) -> None:
        state = {"settings": self.settings, "finished_shards": self.finished_shards, "boundary": vars(boundary)}
        write_bytes_atomic(self.out / STATE_FILE, json.dumps(state, indent=2).encode())

    def finish(self) -> dict[str, Any]:
        """Close the last shard, write the index, drop the resume state; returns the index."""
        if self._shard is not None:
            self._close_shard()
        self._flush(self._documents)
        self._documents.close()
        counts = [self.shard_tokens] * self.finished_shards
        if self.position % self.shard_tokens:
            counts[-1] = self.position % self.shard_tokens
        combined = hashlib.sha256(f"{self.boundary.chain}:{self.tokenizer['fingerprint']}".encode()).hexdigest()
        index = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "settings": self.settings,
            "dtype": self.dtype.name,
            "shard_tokens": self.shard_tokens,
            "tokens": self.position,
            "documents": self.boundary.documents,
            "shards": [{"file": shard_name(n), "tokens": count} for n, count in enumerate(counts)],
            "documents_file": DOCUMENTS_FILE,
            "eos": {"id": self.eos, "placement": "between documents" if self.eos is not None else "none"},
            "tokenizer": self.tokenizer,
            "fingerprint": {
                "corpus": self.boundary.chain,
                "tokenizer": self.tokenizer["fingerprint"],
                "combined": combined,
            },
        }
        write_bytes_atomic(self.out / INDEX_FILE, (json.dumps(index, indent=2) + "\n").encode())
        (self.out / STATE_FILE).unlink(missing_ok=True)
        return index

    def abandon(self) -> None:
        """After an error: close files and drop the unfinished shard; finished shards and the state stay."""
        if self._shard is not None:
            with suppress(OSError):  # a full disk fails the close's flush too; the file goes anyway
                self._shard.close()
            self._tmp_path().unlink(missing_ok=True)
            self._shard = None
        if not self._documents.closed:
            with suppress(OSError):
                self._documents.close()


def _read_state(out: Path) -> dict[str, Any] | None:
    """The resume state of an interrupted prepare (None when there is none), checked field by field."""
    path = out / STATE_FILE
    if not path.is_file():
        return None
    state = read_json(path, DataError, f"delete {out} and prepare the data again")
    try:
        Boundary(**state["boundary"])
        valid = (
            isinstance(state["settings"], dict)
            and isinstance(state["finished_shards"], int)
            and state["finished_shards"] >= 0
            and all(isinstance(state["boundary"][key], int) for key in ("unit", "tokens", "documents"))
            and isinstance(state["boundary"]["chain"], str)
        )
    except (TypeError, KeyError):
        valid = False
    if not valid:
        raise DataError(f"{path} is damaged (not the state of an interrupted prepare); delete {out} and prepare again")
    return state
