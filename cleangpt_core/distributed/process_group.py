"""Running one trainer on several processes (or machines) with torchrun: the process group.

``torchrun --nproc_per_node=N script.py`` (``--nnodes``, ``--node-rank`` and ``--rdzv-endpoint`` for several
machines) sets RANK, WORLD_SIZE and LOCAL_RANK; the trainer then joins the process group (gloo on CPU, nccl
on CUDA), spreads the model as its strategy says (`cleangpt_core.distributed.strategies`) and reads only its
rank's shard of every batch list. Only rank 0 writes logs and publishes checkpoints (a sharded checkpoint's
shards are each rank's own). Without torchrun everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cleangpt_core.distributed.parent_death import die_with_parent


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the processes of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, logs and progress bars."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether gradients and metrics must be combined across processes."""
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process run (torchrun or a compatible launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device: torch.device) -> str:
    """nccl for CUDA devices, gloo for everything else."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group torchrun describes (once per process) and say where this process stands.

    A worker torchrun started dies with it: torchrun puts each worker in a session of its own, so a launcher
    killed alone (``kill -9``, the out-of-memory killer) would leave its workers running.
    """
    if dist.is_available() and dist.is_initialized():
        return current_context()
    if "TORCHELASTIC_RUN_ID" in os.environ:  # set by torchrun's agent for each worker it starts
        die_with_parent()
    if not launched_by_torchrun():
        return DistributedContext()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device))
    return current_context()


def current_context() -> DistributedContext:
    """The rank and world size of an initialised process group, or the single-process context."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def all_reduce_sum(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The element-wise sum of `values` over every process (the tensor itself when alone)."""
    if context.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(context: DistributedContext) -> None:
    """Wait until every process gets here (so no rank reads a checkpoint rank 0 is still writing)."""
    if context.enabled:
        dist.barrier()


def broadcast_text(text: str, context: DistributedContext, device: torch.device) -> str:
    """Rank 0's `text` on every process (the others pass anything); tensors on `device`, where NCCL takes them."""
    if not context.enabled:
        return text
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8, device=device)
    length = torch.tensor([data.numel() if context.is_main else 0], dtype=torch.int64, device=device)
    dist.broadcast(length, src=0)
    received = data if context.is_main else torch.empty(int(length.item()), dtype=torch.uint8, device=device)
    dist.broadcast(received, src=0)
    return bytes(received.tolist()).decode("utf-8")


def all_agree(ok: bool, context: DistributedContext, device: torch.device) -> bool:
    """Whether every process passed ``ok=True`` (each learns it, so that all of them go on or stop together)."""
    if not context.enabled:
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
