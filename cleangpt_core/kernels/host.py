"""What this host is, as far as kernel speed goes: the key its measured kernel choices are cached under.

Two hosts share choices only when everything that decided the timings is the same: the CPU model, the ISA
features the libraries may use (the CPU's flags, and the limits ``ONEDNN_MAX_CPU_ISA`` and
``MKL_ENABLE_INSTRUCTIONS`` put on them), the number of threads and the torch version (its oneDNN and MKL).
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import torch

# The CPU flags that decide which code paths oneDNN and MKL take (x86: vector width, bf16 and int8 dot products,
# AMX tiles; Arm: NEON, SVE and their bf16).
SPEED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "asimd",
    "sve",
    "bf16",
)
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_identity(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, str, set[str]]:
    """The vendor, model name and flags of this machine's first CPU (empty where /proc/cpuinfo does not say)."""
    fields: dict[str, str] = {}
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", platform.processor(), set()
    for line in text.splitlines():
        if not line.strip() and fields:  # the first processor's block is enough
            break
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags") or fields.get("Features") or ""  # x86 says flags, Arm says Features
    return fields.get("vendor_id", ""), fields.get("model name", platform.processor()), set(flags.split())


@cache
def _cpu() -> tuple[str, str, tuple[str, ...]]:
    vendor, model, flags = cpu_identity()
    return vendor, model, tuple(flag for flag in SPEED_FLAGS if flag in flags)


def host_key() -> str:
    """This host's key: CPU model, speed flags, ISA limits, threads and torch version, in one line."""
    return _host_key(torch.get_num_threads(), tuple(os.environ.get(name, "") for name in ISA_LIMITS))


@cache
def _host_key(threads: int, limits: tuple[str, ...]) -> str:
    vendor, model, flags = _cpu()
    parts = [
        model or vendor or "unknown CPU",
        "isa=" + ",".join(flags),
        *(f"{name}={limit}" for name, limit in zip(ISA_LIMITS, limits, strict=True) if limit),
        f"threads={threads}",
        f"torch={torch.__version__}",
    ]
    return " | ".join(parts)
