"""Reading the JSON files cleanGPT writes (model configs, trainer states, experiment configs, plans, tokenizer
files): one place turns a damaged file into an error that names it and says what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cleangpt_core.errors import CleanGPTError


def read_json(path: Path, error: type[CleanGPTError], advice: str) -> Any:
    """The JSON value in `path`.

    A file that is not UTF-8 JSON, or nests too deep to parse, raises `error` naming the file, followed by
    `advice` (what the user can do about it).
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as problem:
        reason = "nested too deeply" if isinstance(problem, RecursionError) else " ".join(str(problem).split())
        raise error(f"{path} is damaged or truncated (not valid JSON: {reason}); {advice}") from None
