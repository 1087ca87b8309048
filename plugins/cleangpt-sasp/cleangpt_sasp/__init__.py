"""cleanGPT's SASP architecture: the simplified transformer block of He & Hofmann (ICLR 2024)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cleangpt_sasp.config import SASPConfig

if TYPE_CHECKING:
    from cleangpt_sasp.model import SASPTransformerModel

__all__ = ["SASPConfig", "SASPTransformerModel"]


def __getattr__(name: str) -> Any:
    # The model imports torch; importing it lazily keeps plugin discovery (cleangpt --help) fast.
    if name == "SASPTransformerModel":
        from cleangpt_sasp.model import SASPTransformerModel

        return SASPTransformerModel
    raise AttributeError(f"module 'cleangpt_sasp' has no attribute {name!r}")
