"""``python-stdlib``: the running Python's standard-library sources as a corpus every machine has offline.

Tiny Shakespeare (1.1 M characters) is too small for a scaling ladder: past about a million parameters it is
memorised before a compute-optimal token budget is spent. The standard library is ten times larger, needs no
download, is real text written by many hands over thirty years (code, docstrings, comments), and is UTF-8 by
rule (PEP 8: no encoding declaration in the core distribution).

The corpus is every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]``, one document per file, in the
order of their relative paths (as POSIX strings, so the order is the same on every system), less:

- ``site-packages`` and ``dist-packages``: third-party packages, different on every machine;
- test suites (folders named ``test``, ``tests``, ``idle_test``): Linux distributions ship them apart (Debian's
  ``python3.11`` ships 30 test files where a source build has 1,056), so with them the size of the corpus of
  one Python version would depend on how it was installed (31 MB or 11 MB); and they are the least natural
  text of the library: deliberately malformed sources, files in other encodings, exotic Unicode;
- build records (``_sysconfigdata_*.py``, ``config-X.Y-*/``): they spell out the install's own paths, so two
  installs of one version would differ for no reason of language.

The fingerprint names the Python version and hashes the relative paths and sizes of the files, so a run that
started on 3.11 is refused when resumed on 3.12 (`data_fingerprint`, checked on resume), cheaply: no file is
read to compute it. Its validation split is the tail of the files, the loaders' rule for local sources.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sysconfig
from pathlib import Path
from typing import Any

from cleangpt_core.errors import DataError

PYTHON_STDLIB = "python-stdlib"
SOURCE_SUFFIX = ".py"
# folders never entered: third-party packages, test suites, and compiled caches (which hold no .py anyway)
_SKIPPED_FOLDERS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})


def is_python_stdlib(dataset: Any) -> bool:
    """Whether a dataset name names this corpus (case-insensitively, as "tinyshakespeare" is matched)."""
    return isinstance(dataset, str) and dataset.lower() == PYTHON_STDLIB


def stdlib_root() -> Path:
    """The running Python's standard-library folder (for a virtual environment: its base Python's)."""
    return Path(sysconfig.get_paths()["stdlib"])


def _is_build_record(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return name.startswith("_sysconfigdata") or relative.split("/", 1)[0].startswith("config-")


def corpus_files(root: Path | None = None) -> list[Path]:
    """The corpus's files, in sorted relative-path order (see the module docstring for what is left out)."""
    root = stdlib_root() if root is None else root
    if not root.is_dir():
        raise DataError(
            f"this Python's standard library {str(root)!r} is not a folder, so python-stdlib has no text here; "
            "use another dataset"
        )
    found: list[tuple[str, Path]] = []
    for folder, subfolders, names in os.walk(root):  # symlinked folders are not followed: no loops, no escapes
        subfolders[:] = [name for name in subfolders if name not in _SKIPPED_FOLDERS]
        for name in names:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if name.endswith(SOURCE_SUFFIX) and path.is_file() and not _is_build_record(relative):
                found.append((relative, path))
    if not found:
        raise DataError(f"this Python's standard library {str(root)!r} holds no .py files; use another dataset")
    return [path for _, path in sorted(found)]


def stdlib_fingerprint(root: Path | None = None) -> str:
    """``python-stdlib-<version>-<12 hex digits>``: the Python version, and a hash of the files' relative paths
    and sizes (read from the folder, not the files, so it costs milliseconds)."""
    root = stdlib_root() if root is None else root
    digest = hashlib.sha256()
    for path in corpus_files(root):
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return f"{PYTHON_STDLIB}-{platform.python_version()}-{digest.hexdigest()[:12]}"
