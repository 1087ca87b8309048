"""Sharded tensors on disk: each process writes its own shards, any number of processes reads them back.

A run sharded with FSDP2 checkpoints through ``torch.distributed.checkpoint`` (DCP), so that no process ever
holds the whole state: `write_shards` is called by every process with its shards (DTensors, or plain tensors
that every process holds alike, written once) and each writes one safetensors file of what it owns;
`read_shards` fills tensors of any sharding, on any number of processes, each reading only the slices it
needs (resharding: 2 processes' shards resume on 1 or on 4). `read_full` assembles whole tensors in one
process (the model directory's ``model.safetensors``, made on demand by `consolidate_model_weights`).

Why DCP's Hugging Face storage and not its default one: the default ``FileSystemWriter`` writes its global
metadata (which chunk of which tensor lies where) as a pickled ``.metadata`` file, and reading it unpickles
a file a stranger may have handed us. ``HuggingFaceStorageWriter(save_distributed=True)`` writes only
safetensors files, one per process, each recording its chunks' offsets as JSON in its own safetensors header;
``HuggingFaceStorageReader`` rebuilds the metadata from those headers. Nothing here unpickles. (DCP's own
collectives pass pickled plans between the processes of the run; that is the run talking to itself, not a
file read.) The two classes are torch's public API since torch 2.9.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from cleangpt_core.checkpoints.atomic_write import atomic_target
from cleangpt_core.checkpoints.run_dir import MODEL_WEIGHTS_FILE, SHARDS_DIR
from cleangpt_core.errors import CheckpointError, ConfigError

MODEL_PREFIX = "model."  # the weights' names in the shards; everything else there is the trainer's state


@contextmanager
def _one_process_is_meant() -> Iterator[None]:
    """Silence DCP's warning that it works in a single process: here that is asked for, not assumed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def check_supported() -> None:
    """Fail in one line, before anything is trained or read, where this torch has no sharded checkpoints."""
    import torch.distributed.checkpoint as dcp

    if not hasattr(dcp, "HuggingFaceStorageWriter"):
        raise ConfigError(
            f"sharded checkpoints (those of trainer.strategy='fsdp') are written and read through "
            f"torch.distributed.checkpoint's safetensors storage, which needs torch>=2.9 (this is torch "
            f"{torch.__version__}); upgrade torch, or train with trainer.strategy='ddp'"
        )


def write_shards(tensors: Mapping[str, torch.Tensor], checkpoint: Path) -> None:
    """Write this process's shards of `tensors` into ``checkpoint/shards/``; every process of the run calls it.

    `tensors` maps flat names to DTensors (each process writes its own chunks) or plain tensors (the same on
    every process: one of them writes it).
    """
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    check_supported()
    writer = dcp.HuggingFaceStorageWriter(str(checkpoint / SHARDS_DIR), save_distributed=True)
    with _one_process_is_meant():
        dcp.save(dict(tensors), storage_writer=writer, no_dist=not (dist.is_available() and dist.is_initialized()))


def has_shards(checkpoint: Path) -> bool:
    """Whether `checkpoint` was written as shards."""
    return (checkpoint / SHARDS_DIR).is_dir()


def shard_shapes(checkpoint: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The whole shape and the dtype of every tensor in a checkpoint's shards, from the files' headers only.

    A tensor whose chunks do not tile its shape exactly (a damaged or forged header) is refused here, before
    anything of that shape is allocated.
    """
    import torch.distributed.checkpoint as dcp

    check_supported()
    folder = checkpoint / SHARDS_DIR
    try:
        metadata = dcp.HuggingFaceStorageReader(str(folder)).read_metadata()
    except (safetensors.SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        reason = " ".join(str(error).split())
        raise CheckpointError(f"the shards in {folder} are damaged or truncated ({reason})") from None
    shapes = {}
    for name, entry in metadata.state_dict_metadata.items():
        shape = tuple(entry.size)
        covered = sum(math.prod(chunk.sizes) for chunk in entry.chunks)
        if covered != math.prod(shape):
            raise CheckpointError(
                f"the shards in {folder} hold {covered} elements of {name}, whose shape {shape} needs "
                f"{math.prod(shape)}: the checkpoint is damaged or incomplete"
            )
        shapes[name] = (shape, entry.properties.dtype)
    return shapes


def read_shards(tensors: Mapping[str, torch.Tensor], checkpoint: Path, *, alone: bool) -> None:
    """Fill `tensors` (of any sharding) in place from a checkpoint's shards.

    alone: this process reads by itself (no process group, or only this process asks); otherwise every
    process of the run calls it with its own tensors under the same names.
    """
    import torch.distributed.checkpoint as dcp

    saved = shard_shapes(checkpoint)
    missing = sorted(set(tensors) - set(saved))
    if missing:
        raise CheckpointError(
            f"the shards of {checkpoint} hold no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: "
            "resume with the model and optimizer the run was started with"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != saved[name][0]:
            raise CheckpointError(
                f"{checkpoint}: {name} has shape {saved[name][0]} in the shards, {tuple(tensor.shape)} here; "
                "resume with the model config the run was started with"
            )
    reader = dcp.HuggingFaceStorageReader(str(checkpoint / SHARDS_DIR))
    with _one_process_is_meant():
        dcp.load(dict(tensors), storage_reader=reader, no_dist=alone)


def read_full(checkpoint: Path, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Whole tensors (`names`, or every one) assembled from a checkpoint's shards, in this process alone."""
    shapes = shard_shapes(checkpoint)
    wanted = list(shapes) if names is None else names
    tensors = {name: torch.empty(shapes[name][0], dtype=shapes[name][1]) for name in wanted}
    read_shards(tensors, checkpoint, alone=True)
    return tensors


def consolidate_model_weights(checkpoint: Path) -> Path:
    """Write ``model.safetensors`` of a sharded checkpoint from its shards (once; later calls find it there).

    This is the single-file model that ``load_model``, ``generate``, ``serve`` and ``export`` read: a sharded
    run never gathers it while it trains, and the first reader makes it, in one process, from the files.
    """
    target = checkpoint / MODEL_WEIGHTS_FILE
    if target.is_file():
        return target
    names = [name for name in shard_shapes(checkpoint) if name.startswith(MODEL_PREFIX)]
    weights = {name.removeprefix(MODEL_PREFIX): tensor for name, tensor in read_full(checkpoint, names).items()}
    try:
        with atomic_target(target) as aside:
            safetensors.torch.save_file(weights, str(aside), metadata={"format": "pt"})
    except OSError as error:
        raise CheckpointError(
            f"cannot write {target}, the single-file model of the sharded checkpoint {checkpoint} "
            f"({error.strerror or error}); copy the checkpoint to a writable folder and load it from there"
        ) from None
    return target
