"""Training checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint (laid out as `cleangpt_core.checkpoints.run_dir` says) holds a model directory (``config.json``,
``model.safetensors``), the trainer state (``trainer_state.safetensors`` for the optimizer's tensors,
``trainer_state.json`` for the structure around them and the counters), each process's random generators
(``rng/rank-NNNNN.json``) and, when the trainer has them, ``tokenizer/`` and ``experiment.json``. A sharded
run's checkpoint keeps its weights and optimizer tensors as each process's shards instead
(``shards/``, `cleangpt_core.checkpoints.sharded`); its ``trainer_state.json`` names them there.

Every process of a run writes its part into one hidden directory (`CheckpointManager.save_together`); rank 0
renames it into place once all parts are written, and only then does ``<run>/latest`` name it, so a crash, a
killed rank or a full disk never leaves a broken latest checkpoint. Nothing here unpickles: state dicts are
flattened into named tensors plus tagged JSON.
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
from torch.distributed.checkpoint.api import CheckpointException

from cleangpt_core.checkpoints.atomic_write import atomic_target, write_text_atomic
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.checkpoints.run_dir import (
    MODEL_WEIGHTS_FILE,
    RNG_DIR,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
    RunDirectory,
    rng_file,
)
from cleangpt_core.checkpoints.sharded import has_shards, read_full
from cleangpt_core.config import ModelConfig
from cleangpt_core.distributed.process_group import DistributedContext, all_agree, barrier, broadcast_text
from cleangpt_core.errors import CheckpointError, CheckpointWriteError
from cleangpt_core.model.serialization import read_checkpoint_weights, save_model, save_model_config

STATE_FORMAT = 1
STATE_PREFIX = "state"  # the trainer state's tensors are named state.<path> (in shards too, beside model.<name>)
RNG_FORMAT = 1
HOST = torch.device("cpu")

# Tags of the JSON encoding: everything JSON cannot say natively is a one-key object with one of these keys.
_TENSOR, _TUPLE, _DICT, _ARRAY = "__tensor__", "__tuple__", "__dict__", "__ndarray__"
_TAGS = frozenset({_TENSOR, _TUPLE, _DICT, _ARRAY})


def flatten_state(state: Any, prefix: str, *, copy: bool = True) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split nested state (dicts, lists, tuples, tensors, numbers, strings) into JSON data and named tensors.

    Each tensor is replaced by ``{"__tensor__": name}`` where `name` is its path, so an optimizer's state
    (whose dicts have int keys and whose values mix tensors and floats) survives a round trip exactly.
    copy: the tensors are copied to the CPU (for one safetensors file); False keeps them as they are (a
    sharded checkpoint writes each process's DTensor shards, and fills them in place when it loads).
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            # clone: safetensors refuses tensors that share storage, and we must not alias live state
            tensors[path] = value.detach().to("cpu", copy=True).contiguous() if copy else value
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


def tensor_paths(structure: Any) -> list[str]:
    """The names of the tensors a flattened structure refers to, in order."""
    if isinstance(structure, list):
        return [path for item in structure for path in tensor_paths(item)]
    if not isinstance(structure, dict):
        return []
    if _TENSOR in structure:
        return [structure[_TENSOR]]
    return [path for item in structure.values() for path in tensor_paths(item)]


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator this process's training touches: torch's on the CPU and on the
    current CUDA device (this process's GPU, not every visible one), numpy's and Python's."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what `capture_rng_state` saved, the CUDA state into the current device.

    Checkpoints of earlier releases hold every visible GPU's CUDA state in a list; the current device's is
    taken from it, and none where the list is shorter (the run resumes with fewer GPUs visible).
    """
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    if isinstance(cuda, list | tuple):
        current = torch.cuda.current_device()
        cuda = cuda[current] if current < len(cuda) else None
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)


def write_rng_state(checkpoint: Path, rank: int, state: dict[str, Any]) -> None:
    """Write process `rank`'s random generators (`capture_rng_state`) as JSON into ``checkpoint/rng/``."""
    encoded = {key: value.tolist() if isinstance(value, torch.Tensor) else value for key, value in state.items()}
    structure, _ = flatten_state(encoded, "rng")  # no tensor is left: each became its list of bytes
    folder = checkpoint / RNG_DIR
    folder.mkdir(exist_ok=True)
    payload = {"format": RNG_FORMAT, "rank": rank, "state": structure}
    write_text_atomic(folder / rng_file(rank), json.dumps(payload) + "\n")


def read_rng_state(checkpoint: Path, rank: int) -> dict[str, Any] | None:
    """Process `rank`'s random generators as `write_rng_state` wrote them, or None if the checkpoint has none."""
    path = checkpoint / RNG_DIR / rng_file(rank)
    if not path.is_file():
        return None
    payload = read_json(path, CheckpointError, "resume from another checkpoint")
    try:
        if payload["format"] != RNG_FORMAT:
            raise CheckpointError(f"{path}: random generator state format {payload['format']!r} is not {RNG_FORMAT}")
        state = unflatten_state(payload["state"], {})
        for key in ("torch", "cuda"):
            if state.get(key) is not None:
                state[key] = torch.tensor(state[key], dtype=torch.uint8)
        return state
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is damaged ({error!r})") from None


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


def write_model_config(model: nn.Module, directory: Path) -> None:
    """Write the ``config.json`` of a sharded checkpoint's model directory (its weights are in the shards)."""
    config = getattr(unwrap_model(model), "config", None)
    if isinstance(config, ModelConfig):
        save_model_config(config, directory)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Write trainer state: its tensors to safetensors, the rest (with references to them) to JSON."""
    structure, tensors = flatten_state(state, STATE_PREFIX)
    with atomic_target(directory / STATE_TENSORS_FILE) as aside:
        safetensors.torch.save_file(tensors, str(aside), metadata={"format": "pt"})
    write_state_structure(directory, structure)


def write_state_structure(directory: Path, structure: Any) -> None:
    """Write the JSON part of a flattened trainer state (a sharded checkpoint writes its tensors as shards)."""
    payload = {"format": STATE_FORMAT, "state": structure}
    write_text_atomic(directory / STATE_JSON_FILE, json.dumps(payload, indent=1) + "\n")


def read_state_structure(directory: Path) -> Any:
    """The JSON part of a checkpoint's trainer state: its structure, with references to its tensors."""
    json_path = directory / STATE_JSON_FILE
    if not json_path.is_file():
        raise CheckpointError(f"{directory} holds no trainer state ({json_path.name} is missing)")
    payload = read_json(json_path, CheckpointError, "resume from another checkpoint")
    try:
        structure, state_format = payload["state"], payload.get("format")
    except (KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{json_path} is damaged or truncated ({error})") from None
    if state_format != STATE_FORMAT:
        raise CheckpointError(f"{json_path}: trainer state format {state_format!r} is not {STATE_FORMAT}")
    return structure


def read_state(directory: Path) -> dict[str, Any]:
    """Read a checkpoint's whole trainer state in this process; a damaged file is an error naming it.

    A sharded checkpoint's tensors are assembled whole from its shards (a resuming trainer reads only its own
    shards instead, `BaseTrainer.load_checkpoint`).
    """
    structure = read_state_structure(directory)
    tensors_path = directory / STATE_TENSORS_FILE
    if has_shards(directory):
        tensors = read_full(directory, tensor_paths(structure))
    elif not tensors_path.is_file():
        raise CheckpointError(f"{directory} holds no trainer state ({tensors_path.name} is missing)")
    else:
        try:
            tensors = safetensors.torch.load_file(str(tensors_path))
        except (safetensors.SafetensorError, ValueError, RuntimeError) as error:
            reason = " ".join(str(error).split())
            raise CheckpointError(f"{tensors_path} is damaged or truncated ({reason})") from None
    try:
        return unflatten_state(structure, tensors)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / STATE_JSON_FILE} does not match its tensors ({error!r})") from None


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
        """Write the checkpoint of `step` of a one-process run atomically and return its directory.

        `extras(directory)` adds files (the tokenizer, the experiment config). On any failure the partial
        directory is removed and `CheckpointWriteError` says which checkpoint is still the latest.
        """

        def write(directory: Path) -> None:
            write_model(model, directory)
            write_state(directory, state)
            if extras is not None:
                extras(directory)

        return self.save_together(step, write, val_loss=val_loss)

    def save_together(
        self,
        step: int,
        write: Callable[[Path], None],
        *,
        context: DistributedContext | None = None,
        device: torch.device = HOST,
        val_loss: float | None = None,
    ) -> Path:
        """Write the checkpoint of `step` with every process of a run, each calling this, and return its directory.

        Rank 0 makes the hidden directory the checkpoint is written into and tells the others its name (on
        `device`, where the collectives take their tensors); every process's `write(directory)` adds its part
        (its random generators, its shards; rank 0 the rest). Only when every part is written does rank 0 move
        the directory into place and point ``latest`` at it, so a checkpoint is never published with a part
        missing. On a failure the partial directory is removed and `CheckpointWriteError` says which
        checkpoint is still the latest. Every process returns once the checkpoint is in place.
        """
        context = context or DistributedContext()
        final = self.run.checkpoint(step)
        try:
            if context.is_main:
                self._write_and_publish(final, write, context, device, val_loss)
            else:
                name = broadcast_text("", context, device)
                if not name:
                    raise CheckpointWriteError(f"rank 0 could not start writing checkpoint {final}")
                _write_part(write, self.root / name, context, device)
        except (OSError, safetensors.SafetensorError, CheckpointException) as error:
            # safetensors reports a full disk as its own error; torch.distributed.checkpoint gathers each
            # process's failure into one CheckpointException
            previous = self.latest()
            kept = f"the latest checkpoint is still {previous}" if previous else "no earlier checkpoint exists"
            reason = " ".join(str(error).split())
            raise CheckpointWriteError(
                f"could not write checkpoint {final} ({type(error).__name__}: {reason}); {kept}. Free disk space "
                "or fix the permissions of the run directory, then resume."
            ) from error
        if context.is_main:
            self._prune()
        barrier(context)  # no process goes on (and reads it) before it is in place
        return final

    def _write_and_publish(
        self,
        final: Path,
        write: Callable[[Path], None],
        context: DistributedContext,
        device: torch.device,
        val_loss: float | None,
    ) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError:
            broadcast_text("", context, device)  # nothing to write into: the others stop too
            raise
        with atomic_target(final, directory=True) as staging:
            broadcast_text(staging.name, context, device)
            _write_part(write, staging, context, device)
        self.run.point_latest(final)
        if val_loss is not None:
            best = self.best()
            if best is None or val_loss < best[1]:
                self.run.point_best(final, val_loss)

    def _prune(self) -> None:
        keep = set(self.checkpoints()[-self.keep_last :])
        latest, best = self.latest(), self.best()
        keep.update(path for path in (latest, best[0] if best else None) if path is not None)
        for path in self.checkpoints():
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)


def _write_part(
    write: Callable[[Path], None], directory: Path, context: DistributedContext, device: torch.device
) -> None:
    """This process's `write(directory)`; raises unless every process wrote its part (all of them learn it)."""
    failure: Exception | None = None
    try:
        write(directory)
    except Exception as error:  # any failure of this part is every process's failure: told to all, then raised
        failure = error
    if not all_agree(failure is None, context, device):
        if failure is not None:
            raise failure
        raise CheckpointWriteError(f"another process could not write its part of {directory.name}")


def average_weights(checkpoints: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights of several checkpoints (accumulated in float64)."""
    if not checkpoints:
        raise CheckpointError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for checkpoint in checkpoints:
        for name, tensor in read_checkpoint_weights(checkpoint).items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
            dtypes[name] = tensor.dtype
    return {name: (value / len(checkpoints)).to(dtypes[name]) for name, value in total.items()}
