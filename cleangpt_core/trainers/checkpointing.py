"""Training checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a directory ``<run>/checkpoints/step-XXXXXXXX/`` holding a model directory (``config.json``,
``model.safetensors``), the trainer state (``trainer_state.safetensors`` for optimizer and RNG tensors,
``trainer_state.json`` for the structure around them and the counters) and, when the trainer has them,
``tokenizer/`` and ``experiment.json``. It is written into a hidden sibling directory and renamed into
place, and only then does ``<run>/latest`` name it, so a crash or a full disk never leaves a broken latest
checkpoint. Nothing here unpickles: state dicts are flattened into named tensors plus tagged JSON.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.errors import CheckpointError, CheckpointWriteError
from cleangpt_core.model.serialization import save_model

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
BEST_FILE = "best"
MODEL_WEIGHTS = "model.safetensors"
STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
STATE_FORMAT = 1
_STEP_DIR = re.compile(r"^step-(\d{8,})$")

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
        safetensors.torch.save_model(model, str(directory / MODEL_WEIGHTS), metadata={"format": "pt"})


def read_model_weights(model: nn.Module, directory: Path) -> None:
    """Load a checkpoint's weights into `model` in place (strict: every parameter must be there)."""
    path = directory / MODEL_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {MODEL_WEIGHTS}; is it a checkpoint directory?")
    missing, unexpected = safetensors.torch.load_model(unwrap_model(model), str(path), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {directory} does not fit this model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; resume with the model config the run was started with"
        )


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Write trainer state: its tensors to safetensors, the rest (with references to them) to JSON."""
    structure, tensors = flatten_state(state, "state")
    safetensors.torch.save_file(tensors, str(directory / STATE_TENSORS), metadata={"format": "pt"})
    payload = {"format": STATE_FORMAT, "state": structure}
    (directory / STATE_JSON).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def read_state(directory: Path) -> dict[str, Any]:
    """Read what `write_state` wrote."""
    try:
        payload = json.loads((directory / STATE_JSON).read_text(encoding="utf-8"))
        tensors = safetensors.torch.load_file(str(directory / STATE_TENSORS))
    except FileNotFoundError as error:
        raise CheckpointError(f"{directory} holds no trainer state ({error.filename} is missing)") from None
    except (json.JSONDecodeError, safetensors.SafetensorError) as error:
        raise CheckpointError(f"trainer state in {directory} is damaged: {error}") from None
    if payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{directory}: trainer state format {payload.get('format')!r} is not {STATE_FORMAT}")
    return unflatten_state(payload["state"], tensors)


def step_of(checkpoint: Path) -> int:
    """The optimizer step a checkpoint directory was written at."""
    match = _STEP_DIR.match(checkpoint.name)
    if match is None:
        raise CheckpointError(f"{checkpoint} is not named like a checkpoint (step-XXXXXXXX)")
    return int(match.group(1))


def _fsync_tree(directory: Path) -> None:
    """Flush every file (and the directory entries) to disk before the rename makes them visible."""
    for path in [*directory.rglob("*"), directory]:
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace a small text file so readers see the old or the new content, never a part."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class CheckpointManager:
    """Writes a run's checkpoints, points ``latest`` at the newest, keeps the last N and the best one."""

    def __init__(self, run_dir: str | Path, keep_last: int = 3) -> None:
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / CHECKPOINTS_DIR
        self.keep_last = keep_last

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (half-written ones are hidden and never listed)."""
        if not self.root.is_dir():
            return []
        found = [path for path in self.root.iterdir() if path.is_dir() and _STEP_DIR.match(path.name)]
        return sorted(found, key=step_of)

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names, or None before the first one."""
        return self._read_pointer(LATEST_FILE)

    def best(self) -> tuple[Path, float] | None:
        """The checkpoint with the lowest validation loss so far, and that loss."""
        pointer = self.run_dir / BEST_FILE
        if not pointer.is_file():
            return None
        record = json.loads(pointer.read_text(encoding="utf-8"))
        path = self.run_dir / record["checkpoint"]
        return (path, float(record["val_loss"])) if path.is_dir() else None

    def _read_pointer(self, name: str) -> Path | None:
        pointer = self.run_dir / name
        if not pointer.is_file():
            return None
        path = self.run_dir / pointer.read_text(encoding="utf-8").strip()
        return path if path.is_dir() else None

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
        directory is removed and `CheckpointError` says which checkpoint is still the latest.
        """
        final = self.root / f"step-{step:08d}"
        staging = self.root / f".partial-{final.name}-{os.getpid()}"
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir()
            write_model(model, staging)
            write_state(staging, state)
            if extras is not None:
                extras(staging)
            _fsync_tree(staging)
            replaced = None
            if final.exists():  # the same step saved again: move the old copy aside, never leave a gap
                replaced = self.root / f".replaced-{final.name}-{os.getpid()}"
                os.replace(final, replaced)
            os.replace(staging, final)
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)
            _fsync_dir(self.root)
            relative = final.relative_to(self.run_dir).as_posix()
            write_text_atomic(self.run_dir / LATEST_FILE, relative + "\n")
            if val_loss is not None:
                best = self.best()
                if best is None or val_loss < best[1]:
                    record = {"checkpoint": relative, "step": step, "val_loss": val_loss}
                    write_text_atomic(self.run_dir / BEST_FILE, json.dumps(record) + "\n")
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            if not isinstance(error, OSError):
                raise
            previous = self.latest()
            kept = f"the latest checkpoint is still {previous}" if previous else "no earlier checkpoint exists"
            raise CheckpointWriteError(
                f"could not write checkpoint {final} ({type(error).__name__}: {error}); {kept}. "
                "Free disk space or fix the permissions of the run directory, then resume."
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
        for name, tensor in safetensors.torch.load_file(str(checkpoint / MODEL_WEIGHTS)).items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
            dtypes[name] = tensor.dtype
    return {name: (value / len(checkpoints)).to(dtypes[name]) for name, value in total.items()}
