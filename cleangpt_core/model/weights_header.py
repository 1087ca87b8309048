"""A weights file checked against the model a config describes, before that model is built.

A ``config.json`` can ask for any size (``n_layer: 1000000``, ``vocab_size: 1e12``): building first and
comparing after would take minutes and gigabytes, or fail in the allocator. The safetensors header (names
and shapes, a few kilobytes) is read first; the number of blocks it holds bounds the config's ``n_layer``
before anything is built, and the model is then built on the meta device (shapes, no memory) to compare
every tensor's shape. Only a config that fits its weights is built for real.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import torch

from cleangpt_core.errors import CleanGPTError

_BLOCK_INDEX = re.compile(r"\.(?:h|layers|blocks)\.(\d+)\.")  # transformer.h.3., model.layers.3.


def read_header(path: Path, error: type[CleanGPTError]) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in a safetensors file, reading only its header."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as weights:
            return {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118
    except (safetensors.SafetensorError, OSError, ValueError) as problem:
        raise error(
            f"{path} is not a readable safetensors file ({' '.join(str(problem).split())[:200]}); it is damaged, "
            "truncated or of another format (cleanGPT never loads pickles): export the weights as safetensors"
        ) from None


def check_block_count(names: Any, n_layer: int, where: str, error: type[CleanGPTError]) -> None:
    """Refuse a config with more blocks than the weights hold, before a model with that many is built."""
    indices = {int(match.group(1)) for name in names if (match := _BLOCK_INDEX.search(name))}
    if indices and n_layer > max(indices) + 1:
        raise error(
            f"{where} holds the weights of {max(indices) + 1} blocks, but its config asks for n_layer={n_layer}; "
            "the config does not belong to these weights"
        )


def meta_state_dict(model_type: str, config: Any, where: str, error: type[CleanGPTError]) -> dict[str, torch.Tensor]:
    """The state dict (shapes only) of the model `config` describes, built on the meta device.

    A config can ask for tensors of more elements than an int64 counts (``n_embd: 2**40`` makes a (vocab,
    2**40) embedding): torch refuses to describe them even without memory, and that is the config's fault.
    """
    from cleangpt_core.model.factory import get_model

    try:
        with torch.device("meta"):
            return get_model(model_type, config=config).state_dict(keep_vars=True)  # a tied tensor: one object
    except (RuntimeError, OverflowError) as problem:
        if not _too_large(problem):
            raise
        sizes = ", ".join(f"{name}={getattr(config, name)}" for name in _SIZE_FIELDS if hasattr(config, name))
        cause = " ".join(str(problem).split())[:120]
        raise error(
            f"{where}: its config ({sizes}) describes tensors too large to exist ({cause}); the config does not "
            "belong to these weights"
        ) from None


# The fields whose product sizes a tensor, named when the config asks for one too large to exist.
_SIZE_FIELDS = ("vocab_size", "n_embd", "n_head", "n_layer", "block_size")


def _too_large(problem: Exception) -> bool:
    """Whether torch refused a tensor for its size (not a fault of the model's code that building raised)."""
    message = str(problem).lower()
    return isinstance(problem, OverflowError) or "overflow" in message or "too large" in message


def check_shapes(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, tuple[int, ...]],
    where: str,
    error: type[CleanGPTError],
    *,
    tied_may_be_missing: bool = False,
) -> None:
    """Refuse weights whose names or shapes differ from the model's, naming the first few.

    tied_may_be_missing: a tensor that shares its storage with another (a tied head) may be stored once.
    """
    groups: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        groups.setdefault(id(tensor), []).append(name)
    missing = [
        names[0]
        for names in groups.values()
        if not any(name in found for name in names) or (not tied_may_be_missing and not all(n in found for n in names))
    ]
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise error(f"{where} does not fit the config: missing {sorted(missing)[:5]}, unexpected {unexpected[:5]}")
    for name, shape in found.items():
        if tuple(expected[name].shape) != tuple(shape):
            raise error(
                f"{where}: {name} has shape {tuple(shape)}, but the config makes it {tuple(expected[name].shape)}; "
                "the config does not belong to these weights"
            )
