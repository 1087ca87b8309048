"""Choosing the device to train on (CUDA, then Apple's MPS, then the CPU, unless the caller names one), and
waiting for it to finish its queued work.

Under torchrun each process of a machine owns one GPU, the one of its LOCAL_RANK: ``cuda`` (no index) would
leave it unset (``torch.cuda.set_device`` refuses it) and ``cuda:0`` would put every rank on the first GPU,
so a CUDA device is always the rank's own, whatever index was asked for.
"""

from __future__ import annotations

import os

import torch

from cleangpt_core.errors import ConfigError


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The device to use: `device` if given (checked to exist), else the best one available.

    Under torchrun each process takes the CUDA device of its LOCAL_RANK (`rank_device`).
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return rank_device(torch.device("cuda"))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device {str(device)!r} is not a torch device; use 'cpu', 'cuda', 'cuda:1', 'mps' or 'auto'"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {str(device)!r} was asked for but MPS is not available here; use 'cpu' or 'auto'")
    return rank_device(chosen)


def rank_device(device: torch.device) -> torch.device:
    """`device` for this process: under torchrun (LOCAL_RANK set) a CUDA device is the GPU of LOCAL_RANK.

    Out of torchrun, ``cuda`` gets its index (the current device), so every later comparison and
    ``set_device`` sees one definite GPU; other devices are returned as they are.
    """
    if device.type != "cuda":
        return device
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None:
        return torch.device("cuda", int(local_rank))
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def synchronize(device: torch.device) -> None:
    """Wait until `device` has finished the work queued on it, so that a clock read next times that work.

    CUDA and MPS run work asynchronously (the host only queues it); on the CPU it runs as it is called.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
