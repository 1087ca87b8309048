"""cleanGPT's byte-level tokenizer plugin.

`ByteLevelTokenizer` loads on first access (PEP 562): cleanGPT imports `cleangpt_bytetok.plugin` at start-up
to list components, and that must not import numpy or torch through this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cleangpt_core.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from cleangpt_bytetok.tokenizer import ByteLevelTokenizer

__version__ = "0.1.0"
__all__ = ["ByteLevelTokenizer"]


__getattr__, __dir__ = lazy_exports(__name__, {"ByteLevelTokenizer": ".tokenizer"})
