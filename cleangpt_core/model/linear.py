"""The linear layer every part is built from: `nn.Linear`, with float32 on a CPU multiplied by oneDNN where
that is faster.

PyTorch computes a float32 `F.linear` on a CPU with MKL's sgemm. On AMD CPUs MKL does not take its AVX-512
code path: on the 2-core AMD EPYC this project is developed on, sgemm runs at about 200 GFLOP/s, where
oneDNN, PyTorch's other CPU GEMM library, runs the same float32 products at
380-450 GFLOP/s for the training shapes of the character model. The matmuls are about 60% of a float32
training step there, so `Linear` sends float32 CPU products through oneDNN, forward and backward, on the
CPUs where oneDNN has the wider ISA (`cleangpt_core.model.cpu_gemm`: AMD with AVX-512); elsewhere (an
AVX2-only CPU, Intel, Arm) it keeps PyTorch's MKL, which is as fast or faster there. oneDNN
costs about 11 us a call more, so small products (one token's step in generation) stay on MKL: measured
there, the two break even near 2^21 multiply-adds. Everything else goes through `F.linear` unchanged: other
dtypes, autocast (bf16 already runs on oneDNN), GPUs, tensor subclasses such as DTensor, code being compiled
by `torch.compile`, and a PyTorch build without oneDNN.

`Linear` is an `nn.Linear`: same parameters, names, initialisation and state dict, so checkpoints, Hugging
Face interop and `isinstance(module, nn.Linear)` checks see no difference. Results agree with `F.linear` to
float32 rounding (the summation order differs); each library is deterministic on its own.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.model.cpu_gemm import onednn_is_faster

# `_linear_pointwise` is the dense-tensor entry to oneDNN's matmul (torch.compile's CPU backend emits it too).
_ONEDNN_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
ONEDNN_AVAILABLE: bool = _ONEDNN_LINEAR is not None and torch.backends.mkldnn.is_available()
_PLAIN = (torch.Tensor, nn.Parameter)
ONEDNN_MIN_MACS = 1 << 21  # the break-even product size measured above
# None: the CPU decides (`onednn_is_faster`); True or False: `onednn_linear` says
_ENABLED: ContextVar[bool | None] = ContextVar("cleangpt_onednn_linear", default=None)


class onednn_linear:  # noqa: N801 - a context manager, named like torch.no_grad
    """Within the block, let `Linear` use oneDNN (True) or not (False: MKL's numbers and speed), whatever
    this CPU would choose (`cleangpt_core.model.cpu_gemm`), to compare.

    Reusable and re-entrant, like `torch.autocast`: one instance may wrap every step of a loop.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._tokens: list[Token[bool | None]] = []

    def __enter__(self) -> None:
        self._tokens.append(_ENABLED.set(self.enabled))

    def __exit__(self, *exc_info: object) -> None:
        _ENABLED.reset(self._tokens.pop())


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


def uses_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear(x, weight)` runs on oneDNN: a large enough float32 product of plain tensors on a CPU
    where oneDNN is the faster library, outside autocast and `torch.compile`, unless `onednn_linear` says
    otherwise."""
    # asked first: Dynamo cannot trace `ContextVar.get`, and reading it while compiling breaks the graph;
    # torch.compile picks its own GEMMs (and cannot lower this one)
    if torch.compiler.is_compiling() or not ONEDNN_AVAILABLE:
        return False
    enabled = _ENABLED.get()
    return (
        (onednn_is_faster() if enabled is None else enabled)
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.dim() >= 2
        and x.numel() * weight.size(0) >= ONEDNN_MIN_MACS
        and type(x) in _PLAIN
        and type(weight) in _PLAIN
        and not torch.is_autocast_enabled("cpu")
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, on oneDNN where `uses_onednn` says so."""
    if not uses_onednn(x, weight):
        return F.linear(x, weight, bias)
    tracked = x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    if torch.is_grad_enabled() and tracked:
        return _OneDnnLinear.apply(x, weight, bias)
    return _onednn(x, weight, bias)


class Linear(nn.Linear):
    """`nn.Linear` computed by `linear`: the layer the built-in parts use, and plugins may use."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
