"""The file of measured kernel choices, one section per host: JSON, validated on every read.

It lives under the user's cache folder (``$XDG_CACHE_HOME/cleangpt/kernels.json``, ``~/.cache`` when unset);
``$CLEANGPT_KERNELS_CACHE`` names another file (tests, or a shared cache). It holds data only, never code: a
file that does not have the layout below is ignored with a warning and rewritten by the next choice measured,
so a damaged cache costs a few milliseconds of timing, never a run.

    {"format": 1, "hosts": {HOST KEY: {SHAPE KEY: {"kernel": NAME, "ms": {CANDIDATE: MILLISECONDS}}}}}
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cleangpt_core.checkpoints.atomic_write import write_text_atomic

logger = logging.getLogger(__name__)

FORMAT = 1
CACHE_ENV = "CLEANGPT_KERNELS_CACHE"
Entry = dict[str, Any]  # {"kernel": name, "ms": {candidate: milliseconds}}


def cache_path() -> Path:
    """Where this user's kernel choices are kept."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "cleangpt" / "kernels.json"


def _problem(data: Any) -> str | None:
    """What is wrong with the layout of a cache file's contents, or None when it is sound."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("hosts"), dict):
        return f'not a kernel cache of format {FORMAT} (an object with "format" and "hosts")'
    for host, entries in data["hosts"].items():
        if not isinstance(entries, dict):
            return f"host {host!r} holds no object of choices"
        for shape, entry in entries.items():
            ms = entry.get("ms") if isinstance(entry, dict) else None
            if (
                not isinstance(entry.get("kernel") if isinstance(entry, dict) else None, str)
                or not isinstance(ms, dict)
                or not all(isinstance(value, int | float) for value in ms.values())
            ):
                return f'choice {shape!r} of host {host!r} is not {{"kernel": name, "ms": {{...}}}}'
    return None


def read_cache(path: Path | None = None) -> dict[str, dict[str, Entry]]:
    """Every host's choices in the cache file; empty when there is none, or it is damaged (with a warning)."""
    path = path or cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as error:
        logger.warning("ignoring the kernel cache %s (%s); it will be rewritten", path, " ".join(str(error).split()))
        return {}
    problem = _problem(data)
    if problem is not None:
        logger.warning("ignoring the kernel cache %s (%s); it will be rewritten", path, problem)
        return {}
    return data["hosts"]


def store_choice(host: str, shape: str, entry: Entry, path: Path | None = None) -> None:
    """Add one measured choice to the cache file, keeping what other processes and hosts wrote there."""
    hosts = read_cache(path)
    hosts.setdefault(host, {})[shape] = entry
    _write(hosts, path or cache_path())


def drop_host(host: str, path: Path | None = None) -> None:
    """Remove every choice of `host` from the cache file (to measure them afresh)."""
    hosts = read_cache(path)
    if hosts.pop(host, None) is not None:
        _write(hosts, path or cache_path())


def _write(hosts: dict[str, dict[str, Entry]], path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"format": FORMAT, "hosts": hosts}, indent=1, sort_keys=True) + "\n")
    except OSError as error:  # a read-only home: the choice still holds for this process
        logger.warning("could not write the kernel cache %s (%s); choices are kept for this process only", path, error)


def clear_cache(path: Path | None = None) -> bool:
    """Delete the cache file; whether there was one."""
    path = path or cache_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
