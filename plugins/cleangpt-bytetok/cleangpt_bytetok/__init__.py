"""cleanGPT's byte-level tokenizer plugin.

`ByteLevelTokenizer` loads on first access (PEP 562): cleanGPT imports `cleangpt_bytetok.plugin` at start-up
to list components, and that must not import numpy or torch through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cleangpt_bytetok.tokenizer import ByteLevelTokenizer

__version__ = "0.1.0"
__all__ = ["ByteLevelTokenizer"]


def __getattr__(name: str) -> Any:
    if name != "ByteLevelTokenizer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module("cleangpt_bytetok.tokenizer").ByteLevelTokenizer
