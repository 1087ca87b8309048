"""Running a test's function on two CPU processes of one gloo group, as torchrun's two workers would run it.

``on_two_ranks(function, *args)`` spawns the processes with torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so a trainer built in them joins the group exactly as under torchrun;
`function(rank, *args)` must be defined at the top of an importable module (a test module is). The group is
left when the function returns. Imported by name (``from two_ranks import on_two_ranks``), as tiny_runs is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def on_two_ranks(function: Callable[..., None], *args: Any) -> None:
    """Run ``function(rank, *args)`` on ranks 0 and 1; an exception in either fails the call."""
    torch.multiprocessing.spawn(_as_rank, args=(function, free_port(), args), nprocs=2, join=True)


def _as_rank(rank: int, function: Callable[..., None], port: int, args: tuple[Any, ...]) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    try:
        function(rank, *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
