"""The precision a trainer computes in: its `mixed_precision` option resolved for the device it trains on.

``"auto"`` (the advanced trainer's default) takes bf16 autocast only where the hardware computes in bf16
natively, since only there is it faster than fp32, and at this scale it learns as well: the default recipe
reached validation loss 1.7705 in bf16 at about 1.45 times fp32's tokens/s (fp32: 1.7742) on a CPU with
AVX512-BF16. Natively means a CUDA GPU with bf16 tensor cores (compute capability 8.0 or newer), or a CPU on
which oneDNN runs bf16 and has bf16 dot-product instructions to run it with (AVX512-BF16 or AMX-BF16 on x86,
the BF16 extension on Arm). Everywhere else bf16 is emulated, slower than fp32, and "auto" keeps full
precision.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from cleangpt_core.errors import ConfigError

# The explicit option that reproduces a resolved precision; what a checkpoint records it as.
PrecisionName = Literal["no", "bf16", "fp16"]
PRECISION_NAMES: tuple[PrecisionName, ...] = get_args(PrecisionName)
_NAMES: dict[torch.dtype | None, PrecisionName] = {None: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}

# CPU features (torch.cpu.get_capabilities) of instructions that compute in bf16, rather than only convert it.
_BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 matrix products in hardware, so that bf16 autocast is faster there."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        # oneDNN's own check also passes on plain AVX-512, where it emulates bf16 (slower than fp32)
        capabilities = torch.cpu.get_capabilities()
        return torch.ops.mkldnn._is_mkldnn_bf16_supported() and any(
            capabilities.get(feature, False) for feature in _BF16_CPU_FEATURES
        )
    return False


def resolve_precision(mixed_precision: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a `mixed_precision` option on `device` (None: full precision)."""
    if mixed_precision == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    if mixed_precision in (False, "no"):
        return None
    if mixed_precision is True:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if mixed_precision == "fp16":
        if device.type != "cuda":
            raise ConfigError(
                f"mixed_precision='fp16' needs a CUDA GPU (its gradient scaler is CUDA-only) but training runs on "
                f"{device.type}; use mixed_precision='bf16' (or True) there"
            )
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("mixed_precision='bf16' is not supported by this GPU; use 'fp16'")
    return torch.bfloat16


def precision_name(precision: torch.dtype | None) -> PrecisionName:
    """The `mixed_precision` value that trains in `precision` (an autocast dtype, or None for full precision)."""
    return _NAMES[precision]


def describe_precision(precision: torch.dtype | None) -> str:
    """`precision` in words, for the lines a run prints."""
    return "full precision" if precision is None else f"{precision_name(precision)} autocast"
