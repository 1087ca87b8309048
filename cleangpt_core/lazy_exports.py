"""Package exports imported on first access (PEP 562).

The plugin registry imports light modules (config schemas, a plugin's `plugin.py`) while the CLI starts,
and importing such a module first imports its package. A package whose ``__init__`` imported its
implementation eagerly would pull torch into ``cleangpt --help`` on the way; these exports load only when
a name is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module-level ``__getattr__`` and ``__dir__`` for `package`.

    `exports` maps each public name to the module that defines it, absolute or relative to the package
    (``".tokenizer"``). Use as ``__getattr__, __dir__ = lazy_exports(__name__, {...})``.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 -- the name PEP 562 looks up
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
