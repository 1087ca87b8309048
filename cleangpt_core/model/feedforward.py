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
from cleangpt_core.kernels import gelu_tanh
from cleangpt_core.model.linear import Linear


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
