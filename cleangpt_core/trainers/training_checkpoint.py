"""Training checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint (laid out as `cleangpt_core.checkpoints.run_dir` says) holds a model directory (``config.json``,
``model.safetensors``), the trainer state (``trainer_state.safetensors`` for optimizer and RNG tensors,
``trainer_state.json`` for the structure around them and the counters) and, when the trainer has them,
``tokenizer/`` and ``experiment.json``. It is written aside and renamed into place (`atomic_target`), and
only then does ``<run>/latest`` name it, so a crash or a full disk never leaves a broken latest checkpoint.
Nothing here unpickles: state dicts are flattened into named tensors plus tagged JSON.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from cleangpt_core.checkpoints.atomic_write import atomic_target, write_text_atomic
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.checkpoints.run_dir import MODEL_WEIGHTS_FILE, STATE_JSON_FILE, STATE_TENSORS_FILE, RunDirectory
from cleangpt_core.config import ModelConfig
from cleangpt_core.errors import CheckpointError, CheckpointWriteError
from cleangpt_core.model.serialization import save_model

STATE_FORMAT = 1

# Tags of the JSON encoding: everything JSON cannot say natively is a one-key object with one of these keys.
_TENSOR, _TUPLE, _DICT, _ARRAY = "__tensor__", "__tuple__", "__dict__", "__ndarray__"
_TAGS = frozenset({_TENSOR, _TUPLE, _DICT, _ARRAY})


def flatten_state(state: Any, prefix: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split nested state (dicts, lists, tuples, tensors, numbers, strings) into JSON data and named tensors.

    Each tensor is replaced by ``{"__tensor__": name}`` where `name` is its path, so an optimizer's state
    (whose dicts have int keys and whose values mix tensors and floats) survives a round trip exactly.
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            # clone: safetensors refuses tensors that share storage, and we must not alias live state
            tensors[path] = value.detach().to("cpu", copy=True).contiguous()
            return {_TENSOR: path}
        if isinstance(value, np.ndarray):
            return {_ARRAY: value.tolist(), "dtype": str(value.dtype)}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            if all(isinstance(key, str) for key in value) and not _TAGS.intersection(value):
                return {key: encode(item, f"{path}.{key}") for key, item in value.items()}
            return {_DICT: [[key, encode(item, f"{path}.{key}")] for key, item in value.items()]}
        if isinstance(value, tuple):
            return {_TUPLE: [encode(item, f"{path}.{index}") for index, item in enumerate(value)]}
        if isinstance(value, list):
            return [encode(item, f"{path}.{index}") for index, item in enumerate(value)]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(
            f"cannot store {type(value).__name__} at {path!r} in a checkpoint: only tensors, arrays, numbers, "
            "strings and containers of them are saved (nothing is pickled)"
        )

    return encode(state, prefix), tensors


def unflatten_state(structure: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild what `flatten_state` split."""
    if isinstance(structure, list):
        return [unflatten_state(item, tensors) for item in structure]
    if not isinstance(structure, dict):
        return structure
    if _TENSOR in structure:
        return tensors[structure[_TENSOR]]
    if _ARRAY in structure:
        return np.asarray(structure[_ARRAY], dtype=structure["dtype"])
    if _TUPLE in structure:
        return tuple(unflatten_state(item, tensors) for item in structure[_TUPLE])
    if _DICT in structure:
        return {_hashable(key): unflatten_state(item, tensors) for key, item in structure[_DICT]}
    return {key: unflatten_state(item, tensors) for key, item in structure.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(part) for part in key) if isinstance(key, list) else key


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator training touches: torch (CPU and CUDA), numpy and Python."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what `capture_rng_state` saved."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel or torch.compile wrapper."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model

def write_model(model: nn.Module, directory: Path) -> None:
    """Write a model directory: our architectures through `save_model` (config.json and weights), any other
    module as weights only (tied tensors stored once either way)."""
    model = unwrap_model(model)
    if isinstance(getattr(model, "config", None), ModelConfig):
        save_model(model, directory)
    else:
        with atomic_target(directory / MODEL_WEIGHTS_FILE) as aside:
            safetensors.torch.save_model(model, str(aside), metadata={"format": "pt"})


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Write trainer state: its tensors to safetensors, the rest (with references to them) to JSON."""
    structure, tensors = flatten_state(state, "state")
    with atomic_target(directory / STATE_TENSORS_FILE) as aside:
        safetensors.torch.save_file(tensors, str(aside), metadata={"format": "pt"})
    payload = {"format": STATE_FORMAT, "state": structure}
    write_text_atomic(directory / STATE_JSON_FILE, json.dumps(payload, indent=1) + "\n")


def read_state(directory: Path) -> dict[str, Any]:
    """Read what `write_state` wrote; a damaged file is an error naming it."""
    json_path, tensors_path = directory / STATE_JSON_FILE, directory / STATE_TENSORS_FILE
    for path in (json_path, tensors_path):
        if not path.is_file():
            raise CheckpointError(f"{directory} holds no trainer state ({path.name} is missing)")
    payload = read_json(json_path, CheckpointError, "resume from another checkpoint")
    try:
        structure, state_format = payload["state"], payload.get("format")
    except (KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{json_path} is damaged or truncated ({error})") from None
    if state_format != STATE_FORMAT:
        raise CheckpointError(f"{json_path}: trainer state format {state_format!r} is not {STATE_FORMAT}")
    try:
        tensors = safetensors.torch.load_file(str(tensors_path))
    except (safetensors.SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{tensors_path} is damaged or truncated ({' '.join(str(error).split())})") from None
    try:
        return unflatten_state(structure, tensors)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{json_path} does not match {tensors_path.name} ({error!r})") from None


class CheckpointManager:
    """Writes a run's checkpoints, points ``latest`` at the newest, keeps the last N and the best one."""

    def __init__(self, run_dir: str | Path, keep_last: int = 3) -> None:
        self.run = RunDirectory(run_dir)
        self.run_dir = self.run.root
        self.root = self.run.checkpoints_dir
        self.keep_last = keep_last

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (half-written ones are hidden and never listed)."""
        return self.run.checkpoints()

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names, or None before the first one."""
        return self.run.latest()

    def best(self) -> tuple[Path, float] | None:
        """The checkpoint with the lowest validation loss so far, and that loss."""
        return self.run.best()

    def save(
        self,
        step: int,
        model: nn.Module,
        state: dict[str, Any],
        *,
        val_loss: float | None = None,
        extras: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write the checkpoint of `step` atomically and return its directory.

        `extras(directory)` adds files (the tokenizer, the experiment config). On any failure the partial
        directory is removed and `CheckpointWriteError` says which checkpoint is still the latest.
        """
        final = self.run.checkpoint(step)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with atomic_target(final, directory=True) as staging:
                write_model(model, staging)
                write_state(staging, state)
                if extras is not None:
                    extras(staging)
            self.run.point_latest(final)
            if val_loss is not None:
                best = self.best()
                if best is None or val_loss < best[1]:
                    self.run.point_best(final, val_loss)
        except (OSError, safetensors.SafetensorError) as error:  # safetensors reports a full disk as its own error
            previous = self.latest()
            kept = f"the latest checkpoint is still {previous}" if previous else "no earlier checkpoint exists"
            raise CheckpointWriteError(
                f"could not write checkpoint {final} ({type(error).__name__}: {' '.join(str(error).split())}); "
                f"{kept}. Free disk space or fix the permissions of the run directory, then resume."
            ) from error
        self._prune()
        return final

    def _prune(self) -> None:
        keep = set(self.checkpoints()[-self.keep_last :])
        latest, best = self.latest(), self.best()
        keep.update(path for path in (latest, best[0] if best else None) if path is not None)
        for path in self.checkpoints():
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)


def average_weights(checkpoints: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights of several checkpoints (accumulated in float64)."""
    if not checkpoints:
        raise CheckpointError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for checkpoint in checkpoints:
        for name, tensor in safetensors.torch.load_file(str(checkpoint / MODEL_WEIGHTS_FILE)).items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
            dtypes[name] = tensor.dtype
    return {name: (value / len(checkpoints)).to(dtypes[name]) for name, value in total.items()}
