"""A float32 `F.linear` on a CPU multiplied by oneDNN instead of MKL: one of the two candidates for `linear`.

PyTorch computes a float32 `F.linear` on a CPU with MKL's sgemm. MKL takes its AVX-512 code path on Intel CPUs
only: on the 2-core AMD EPYC with AVX-512 this project is developed on, sgemm runs at about 200 GFLOP/s where
oneDNN, PyTorch's other CPU GEMM library, runs the same products at 380-450 GFLOP/s for a small model's
training shapes. On an AVX2-only CPU both run the same ISA and oneDNN costs more per call (about 11 us), so a
character-model step took 1.16x nanoGPT's time with oneDNN and 1.04x with MKL there. Which one wins is a
question for the host at hand, measured by `cleangpt_core.kernels.choices`; this module only computes.

Results agree with `F.linear` to float32 rounding (the summation order differs); each library is
deterministic on its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# `_linear_pointwise` is the dense-tensor entry to oneDNN's matmul (torch.compile's CPU backend emits it too).
_ONEDNN_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
ONEDNN_AVAILABLE: bool = _ONEDNN_LINEAR is not None and torch.backends.mkldnn.is_available()
_PLAIN = (torch.Tensor, nn.Parameter)
# Below this many multiply-adds oneDNN's extra cost per call outweighs any gain (measured break-even near 2^21
# on the AVX-512 EPYC): one token's step in generation stays on MKL without being timed.
ONEDNN_MIN_MACS = 1 << 21


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN can compute `F.linear(x, weight)` here: a large enough float32 product of plain tensors
    (not DTensor or other subclasses) on a CPU, outside autocast (whose bf16 runs on oneDNN already)."""
    return (
        ONEDNN_AVAILABLE
        and x.dtype == weight.dtype == torch.float32
        and x.dim() >= 2
        and x.numel() * weight.size(0) >= ONEDNN_MIN_MACS
        and type(x) in _PLAIN
        and type(weight) in _PLAIN
        and not torch.is_autocast_enabled("cpu")
    )


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias by oneDNN; `weight` may be a transposed view (the backward passes one)."""
    return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    """`F.linear` whose three products (output, input gradient, weight gradient) all run on oneDNN."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        grad_2d = grad.reshape(-1, grad.size(-1))
        grad_x = _onednn(grad, weight.t(), None) if needs_x else None  # grad @ weight
        # grad.T @ x, with both operands passed as transposed views: oneDNN reads the strides, no copies
        grad_weight = _onednn(grad_2d.t(), x.reshape(-1, x.size(-1)).t(), None) if needs_weight else None
        grad_bias = grad_2d.sum(0) if ctx.has_bias and needs_bias else None
        return grad_x, grad_weight, grad_bias


def onednn_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` by oneDNN, forward and backward (where `onednn_applies`)."""
    tracked = x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    if torch.is_grad_enabled() and tracked:
        return _OneDnnLinear.apply(x, weight, bias)
    return _onednn(x, weight, bias)
