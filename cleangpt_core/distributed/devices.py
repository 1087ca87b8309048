"""Choosing the device to train on: CUDA, then Apple's MPS, then the CPU, unless the caller names one."""

from __future__ import annotations

import os

import torch

from cleangpt_core.errors import ConfigError


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The device to use: `device` if given (checked to exist), else the best one available.

    Under torchrun each process takes the CUDA device of its LOCAL_RANK.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
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
    return chosen
