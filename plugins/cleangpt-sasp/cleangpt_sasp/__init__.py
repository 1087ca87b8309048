"""cleanGPT's SASP architecture: the simplified transformer block of He & Hofmann (ICLR 2024).

`SASPTransformerModel` loads on first access (PEP 562): the model imports torch, and cleanGPT imports this
package's `plugin` module whenever it starts, even for `cleangpt --help`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cleangpt_core.lazy_exports import lazy_exports
from cleangpt_sasp.config import SASPConfig

if TYPE_CHECKING:
    from cleangpt_sasp.model import SASPTransformerModel

__all__ = ["SASPConfig", "SASPTransformerModel"]


__getattr__, __dir__ = lazy_exports(__name__, {"SASPTransformerModel": ".model"})
