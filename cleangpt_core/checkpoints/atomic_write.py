"""Atomic writes: the one place cleanGPT writes a file or a directory aside, flushes it and renames it in.

A reader (or a run resumed after a kill) sees the old content or the new, never a part: the new content is
written under a hidden sibling name (``.partial-<name>-<pid>-<random>``), every file in it is flushed to disk,
and only then is it renamed over the target, which is atomic on POSIX and Windows filesystems. A kill can
leave such a ``.partial-*`` sibling behind; `PARTIAL_PREFIX` lets the owner of a folder find and remove them.

Files get the mode the process's umask gives (``0o666 & ~umask``) even when a library that wrote them chose
a stricter one (safetensors writes 0600), so a shared run directory stays readable to those it was shared with.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_PREFIX = ".partial-"


@contextmanager
def atomic_target(path: str | Path, *, directory: bool = False, replace: bool = True) -> Iterator[Path]:
    """Yield a hidden sibling of `path` to write (an empty directory when `directory`), then move it into place.

    On leaving the block normally the sibling is flushed to disk and renamed to `path`, replacing what was
    there (an existing directory is moved aside first and removed after). On an error it is removed and
    `path` keeps its old content. With `replace=False` a directory is moved in only where `path` is missing
    or an empty directory, in the one rename (so of two writers racing for `path` one wins and the other
    gets `FileExistsError`).
    """
    path = Path(path)
    aside = path.with_name(f"{PARTIAL_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    if directory:
        aside.mkdir()
    try:
        yield aside
        if replace:
            publish(aside, path)
        else:
            _settle(aside)
            try:
                os.rename(aside, path)  # replaces at most an empty directory, atomically
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
                raise FileExistsError(errno.EEXIST, "already exists and is not empty", str(path)) from None
            _fsync_directory(path.parent)
    finally:
        _remove(aside)


def publish(aside: str | Path, path: str | Path) -> None:
    """Flush the finished file or folder `aside` to disk and rename it to `path`, replacing what was there.

    For a writer that fills its hidden sibling over many calls (a token shard) rather than in one block.
    """
    aside, path = Path(aside), Path(path)
    _settle(aside)
    _move_into_place(aside, path)
    _fsync_directory(path.parent)


def remove_partials(folder: str | Path) -> list[Path]:
    """Delete the ``.partial-*`` siblings a killed writer left in `folder` (only its owner may: none is in use)."""
    folder = Path(folder)
    removed = sorted(folder.glob(f"{PARTIAL_PREFIX}*")) if folder.is_dir() else []
    for path in removed:
        _remove(path)
    return removed


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace the file `path` with `data`, atomically."""
    with atomic_target(path) as aside:
        aside.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace the text file `path` with `text` (UTF-8), atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _settle(aside: Path) -> None:
    """Give every file the umask's mode and flush files and folders to disk before the rename shows them."""
    mode = 0o666 & ~_current_umask()
    paths = [*aside.rglob("*"), aside] if aside.is_dir() else [aside]
    for item in paths:
        if item.is_file():
            os.chmod(item, mode)
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
        elif item.is_dir():
            _fsync_directory(item)


def _move_into_place(aside: Path, path: Path) -> None:
    if path.is_dir() and not path.is_symlink():  # os.replace cannot replace a non-empty directory
        old = path.with_name(f"{PARTIAL_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(path, old)
        os.replace(aside, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(aside, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (the rename itself); a no-op where directories cannot be opened (Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _current_umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
