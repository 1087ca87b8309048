"""Names and module paths of earlier releases, kept working in this one place.

A plugin written for plugin API 1.m works with every 1.x core (`cleangpt_core.plugin_api`), so what such a
plugin imported must keep importing after the code it named moves. Everything old is served from here, with a
`DeprecationWarning` that names what to import now; the core's own code never imports an old name.

- Module paths that moved: ``cleangpt_core.builtins`` and its modules are ``cleangpt_core.core_plugins`` (the old
  name read as Python's own ``builtins``; it resolves, with the warning, for one more release), and
  ``cleangpt_core.model.model_Vanilla`` (plugin API 1.0's Vanilla building blocks) is served by this module;
  a training checkpoint's module is ``cleangpt_core.trainers.training_checkpoint`` (it was under ``checkpoints``),
  the trackers' catalog is ``cleangpt_core.config.tracking`` (it was ``experiments.trackers.catalog``), and the
  host's speed paths ``model.cpu_gemm`` and ``model.chunked_loss`` are ``cleangpt_core.kernels``' modules (the
  CPU-flag rule ``onednn_is_faster`` is gone: the kernels are measured on the host).
- Names that left a module: ``LearnedPositionDecoder`` (now `cleangpt_core.model.Decoder`, which takes its own
  blocks) from ``cleangpt_core.model`` and ``cleangpt_core.model.decoder``; ``positions_and_layout`` (now
  `cleangpt_core.model.begin_forward`) from ``cleangpt_core.model`` and ``cleangpt_core.model.kv_cache``;
  ``onednn_linear`` from ``cleangpt_core.model.linear`` and ``chunked_head`` from ``model.chunked_loss`` (now
  both in `cleangpt_core.kernels`).
- Plugin API 1.0's Vanilla classes: ``Block(config, layer_index)`` and ``VanillaTransformerModel(config)``, with
  ``MLP`` and ``CausalSelfAttention`` beside them as ``model_Vanilla`` exported them.

``cleangpt_core/__init__`` installs the finder below; this module imports nothing of the package until an old
name is used (the modules they live in import torch, and ``cleangpt --help`` must not).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from functools import cache
from types import ModuleType
from typing import Any

# old module path (and every module under it) -> where it lives now
MOVED_MODULES = {
    "cleangpt_core.builtins": "cleangpt_core.core_plugins",
    "cleangpt_core.model.model_Vanilla": __name__,
    "cleangpt_core.checkpoints.training_checkpoint": "cleangpt_core.trainers.training_checkpoint",
    "cleangpt_core.experiments.trackers.catalog": "cleangpt_core.config.tracking",
    "cleangpt_core.model.cpu_gemm": "cleangpt_core.kernels.cpu_gemm",
    "cleangpt_core.model.chunked_loss": "cleangpt_core.kernels.chunked_loss",
}
# a module -> the old names it still answers to (each served by this module's `__getattr__`)
OLD_NAMES = {
    "cleangpt_core.model": ("LearnedPositionDecoder", "positions_and_layout"),
    "cleangpt_core.model.decoder": ("LearnedPositionDecoder",),
    "cleangpt_core.model.kv_cache": ("positions_and_layout",),
    "cleangpt_core.model.linear": ("onednn_linear",),
    "cleangpt_core.kernels.chunked_loss": ("chunked_head",),
}
# what to use now, for the warning
CURRENT_NAMES = {
    "LearnedPositionDecoder": "cleangpt_core.model.Decoder",
    "positions_and_layout": "cleangpt_core.model.begin_forward (it returns the layout, whose .positions these are)",
    "Block": "cleangpt_core.model.PreNormBlock with the parts resolve_parts(VanillaConfig()) gives",
    "VanillaTransformerModel": 'cleangpt_core.model.get_model("Vanilla", config=...)',
    "MLP": "cleangpt_core.model.MLP",
    "CausalSelfAttention": "cleangpt_core.model.CausalSelfAttention",
    "onednn_linear": "cleangpt_core.kernels.onednn_linear",
    "chunked_head": "cleangpt_core.kernels.chunked_head",
}


def _moved_to(name: str) -> str | None:
    """Where the module `name` lives now, or None when it did not move."""
    for old, new in MOVED_MODULES.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :] if new != __name__ else new
    return None


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is an earlier release's name: use {new}", DeprecationWarning, stacklevel=3)


class _MovedModule(importlib.abc.Loader):
    """Loads a moved module's old path as the module at its new path (the very same module object)."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        if self.new != __name__:
            _warn(self.old, self.new)
        module = importlib.import_module(self.new)
        self.spec = module.__spec__  # the import system sets the old path's spec on it next: put back in exec
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the module at the new path has run already) but to give it back its own spec."""
        module.__spec__ = self.spec


class _WithOldNames(importlib.abc.Loader):
    """Runs a module as its own loader would, then lets it answer to its old names (PEP 562 ``__getattr__``)."""

    def __init__(self, loader: importlib.abc.Loader, names: Sequence[str]) -> None:
        self.loader, self.names = loader, names

    def __getattr__(self, name: str) -> Any:  # get_source, get_code, is_package...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        module.__getattr__ = _old_name_lookup(module.__name__, self.names, getattr(module, "__getattr__", None))


def _old_name_lookup(
    module: str, names: Sequence[str], fallback: Callable[[str], Any] | None
) -> Callable[[str], Any]:
    def lookup(name: str) -> Any:
        if name in names:
            _warn(f"{module}.{name}", CURRENT_NAMES[name])
            return _old_names()[name]
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return lookup


class _OldPaths(importlib.abc.MetaPathFinder):
    """Finds the old module paths and the modules that keep old names; leaves every other import alone."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = _moved_to(fullname)
        if new is not None:
            return importlib.util.spec_from_loader(fullname, _MovedModule(fullname, new))
        if fullname in OLD_NAMES:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _WithOldNames(spec.loader, OLD_NAMES[fullname])
            return spec
        return None


def install() -> None:
    """Put the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(finder, _OldPaths) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OldPaths())


@cache
def _old_names() -> dict[str, Any]:
    """Every old name, built on first use."""
    from cleangpt_core.config import ModelConfig, VanillaConfig
    from cleangpt_core.kernels import chunked_head, onednn_linear
    from cleangpt_core.model.attention import CausalSelfAttention
    from cleangpt_core.model.decoder import Decoder
    from cleangpt_core.model.factory import resolve_parts
    from cleangpt_core.model.feedforward import MLP
    from cleangpt_core.model.kv_cache import AttentionLayout, KVCache, begin_forward
    from cleangpt_core.model.residual import PreNormBlock

    class Block(PreNormBlock):
        """Vanilla's pre-LN block: x + attn(ln(x)), then x + mlp(ln(x))."""

        def __init__(self, config: ModelConfig, layer_index: int) -> None:
            super().__init__(config, layer_index, resolve_parts(VanillaConfig.model_construct()))

    class VanillaTransformerModel(Decoder):
        """The Vanilla preset built from any model config's shared fields."""

        def __init__(self, config: ModelConfig) -> None:
            super().__init__(VanillaConfig.model_validate(config.model_dump()))

    def positions_and_layout(
        input_ids: Any, attention_mask: Any, kv_cache: KVCache | None
    ) -> tuple[Any, AttentionLayout]:
        """`begin_forward`, returning the positions beside the layout."""
        layout = begin_forward(input_ids, attention_mask, kv_cache)
        return layout.positions, layout

    for old in (Block, VanillaTransformerModel, positions_and_layout):
        old.__module__, old.__qualname__ = __name__, old.__name__
    return {
        "Block": Block,
        "VanillaTransformerModel": VanillaTransformerModel,
        "positions_and_layout": positions_and_layout,
        "LearnedPositionDecoder": Decoder,
        "MLP": MLP,
        "CausalSelfAttention": CausalSelfAttention,
        "onednn_linear": onednn_linear,
        "chunked_head": chunked_head,
    }


def __getattr__(name: str) -> Any:
    if name in CURRENT_NAMES:
        _warn(f"cleangpt_core.model.model_Vanilla.{name}", CURRENT_NAMES[name])
        return _old_names()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
