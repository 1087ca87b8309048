"""Which library multiplies float32 matrices faster on this CPU: oneDNN or MKL (PyTorch's default).

oneDNN pays off where it can use a wider vector ISA than MKL: MKL takes its AVX-512 code path on Intel CPUs
only, so on an AMD CPU with AVX-512 (Zen 4 and later) MKL runs AVX2 code while oneDNN runs AVX-512, about
twice as fast for the training shapes of a small model. Where both run the same ISA (an AVX2-only CPU, an
Intel CPU with AVX-512, anything that is not x86) oneDNN is no faster and costs more per call: measured on an
AVX2-only AMD EPYC, a character-model step took 1.16x nanoGPT's time with oneDNN and 1.04x with MKL. So the
choice is made from what the CPU is, read once, and honours the two libraries' ISA limits
(``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``), with which an AVX-512 machine behaves as an AVX2 one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path


def _allows_avx512(limit: str | None) -> bool:
    """Whether an ISA limit (oneDNN's or MKL's variable) leaves AVX-512 on; unset means no limit."""
    if not limit:
        return True
    value = limit.strip().upper()
    return value.startswith("AVX512") or value.startswith("AVX10") or value in {"ALL", "DEFAULT"}


def prefers_onednn(vendor: str, flags: set[str], environment: Mapping[str, str]) -> bool:
    """Whether oneDNN runs float32 products on a wider ISA than MKL on a CPU of `vendor` with `flags`."""
    avx512 = "avx512f" in flags
    onednn_avx512 = avx512 and _allows_avx512(environment.get("ONEDNN_MAX_CPU_ISA"))
    mkl_avx512 = avx512 and vendor == "GenuineIntel" and _allows_avx512(environment.get("MKL_ENABLE_INSTRUCTIONS"))
    return onednn_avx512 and not mkl_avx512


def cpu_identity(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The vendor and ISA flags of this machine's first CPU (empty where /proc/cpuinfo does not say)."""
    vendor, flags = "", set()
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return vendor, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if not line.strip() and vendor:  # the first processor's block is enough
            break
    return vendor, flags


@cache
def onednn_is_faster() -> bool:
    """`prefers_onednn` for this machine and environment, decided once per process."""
    vendor, flags = cpu_identity()
    return prefers_onednn(vendor, flags, os.environ)
