"""Feed-forward parts: called as ``mlp(x)`` on (B, T, n_embd), each position alone; built as ``cls(config)``.

Every one has an input projection `c_fc` and an output projection `c_proj` (GPT-2's names); each states
`c_proj` as its `residual_projections`, the layer writing into the residual stream, which the decoder's
initialisation scales by 1/sqrt(2 * n_layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.config.parts import MLPOptions, SwiGLUOptions, part_options
from cleangpt_core.model.linear import Linear

# tanh(u) = 2 sigmoid(2u) - 1, so GPT-2's 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x sigmoid(z) with
# z = 2 sqrt(2/pi) (x + 0.044715 x^3)
_Z_SCALE = 2 * (2 / torch.pi) ** 0.5
_CUBIC = 0.044715


def _gate(x: torch.Tensor) -> torch.Tensor:
    """sigmoid(z(x)), in one buffer."""
    return (x * x).mul_(_CUBIC).add_(1.0).mul_(x).mul_(_Z_SCALE).sigmoid_()


class _TanhGeluBySigmoid(torch.autograd.Function):
    """The tanh-approximated GELU as x * sigmoid(z), forward and backward.

    The same function as ``F.gelu(x, approximate="tanh")`` (within 5e-7), written with the sigmoid because
    PyTorch's CPU tanh is slow: measured on the AVX2-only AMD EPYC, on a (768, 512) float32 tensor, tanh took
    3.5x the time of sigmoid and the tanh GELU 860 us against 450 us for this form; its backward likewise. The
    backward keeps the sigmoid: d/dx = s + x s (1 - s) z'(x), z'(x) = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        sigmoid = _gate(x)
        ctx.save_for_backward(x, sigmoid)
        return x * sigmoid

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        x, sigmoid = ctx.saved_tensors
        slope = (x * x).mul_(3 * _CUBIC * _Z_SCALE).add_(_Z_SCALE)  # z'(x)
        slope.mul_(x).mul_(sigmoid).mul_(1.0 - sigmoid).add_(sigmoid)
        return slope.mul_(grad)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x, approximate="tanh")``, by `_TanhGeluBySigmoid` for float32 on a CPU outside torch.compile
    (which fuses F.gelu itself); elsewhere (GPUs, autocast's bf16, which would round each step) F.gelu."""
    if torch.compiler.is_compiling() or x.device.type != "cpu" or x.dtype != torch.float32:
        return F.gelu(x, approximate="tanh")
    if torch.is_grad_enabled() and x.requires_grad:
        return _TanhGeluBySigmoid.apply(x)
    return _gate(x).mul_(x)


class MLP(nn.Module):
    """GPT-2's feed-forward network: 4x expansion with the tanh-approximated GELU."""

    residual_projections = ("c_proj",)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = part_options(config, MLPOptions).ffn_hidden or 4 * config.n_embd
        self.c_fc = Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_tanh(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.activation(self.c_fc(x))))


class ReluSquared(MLP):
    """Primer's feed-forward network (So et al., 2021): GPT-2's, with relu(x)^2 as the activation."""

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


def swiglu_hidden(n_embd: int, multiple_of: int) -> int:
    """Llama's hidden width: 2/3 of 4 x n_embd keeps the parameters of a 4x MLP with three matrices."""
    hidden = int(2 * 4 * n_embd / 3)
    return multiple_of * -(-hidden // multiple_of)


class SwiGLU(nn.Module):
    """Gated MLP (Shazeer, 2020): c_proj(silu(gate) * up), gate and up from one fused projection."""

    residual_projections = ("c_proj",)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        options = part_options(config, SwiGLUOptions)
        hidden = options.ffn_hidden or swiglu_hidden(config.n_embd, options.ffn_multiple_of)
        self.c_fc = Linear(config.n_embd, 2 * hidden, bias=config.bias)  # [gate; up]
        self.c_proj = Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(F.silu(gate) * up))
