"""Position encodings: called once per forward as ``position(x, layout) -> (x, layout)``, built as ``cls(config)``.

An absolute encoding adds to the token embeddings x; a relative one leaves x alone and tells the attention
parts what to do through the layout: rotary sets `layout.rotary` (applied to queries and keys by
`layout.rotate`), ALiBi sets `layout.bias` (added to the scores by `layout.attend`). `layout.positions`
counts real tokens only, so left padding never shifts a position. The decoder keeps the encoding as
`transformer.wpe`, GPT-2's name for its learned positions.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.config.parts import RotaryOptions, part_options
from cleangpt_core.model.kv_cache import AttentionLayout


class LearnedPositions(nn.Embedding):
    """One learned vector per position up to block_size, added to the token embeddings (GPT-2)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.block_size, config.n_embd)

    def forward(self, x: torch.Tensor, layout: AttentionLayout) -> tuple[torch.Tensor, AttentionLayout]:
        return x + super().forward(layout.positions), layout


class Rotary(nn.Module):
    """Rotary position embedding (Su et al., 2021): each pair of query/key features turns by an angle
    proportional to the position, so their dot product depends on the distance alone.

    Pairs are (i, i + head_dim/2), Hugging Face Llama's layout. The cos and sin of every position up to
    block_size are computed in float32 once per device and dtype (so a model cast to bfloat16 still rotates
    exactly), then each call looks its positions up: a decoding step costs two lookups, not a dozen ops.
    A lookup's result is an ordinary tensor even when `generate` made the table under inference mode.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.head_dim = config.n_embd // config.n_head
        self.base = part_options(config, RotaryOptions).rope_base
        self.block_size = config.block_size
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (block_size, head_dim) of every position's angles, in `dtype` on `device`."""
        key = (device, dtype)
        if key not in self._tables:
            exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
            inverse_frequencies = 1.0 / (self.base**exponents)
            positions = torch.arange(self.block_size, device=device).float()
            angles = positions.unsqueeze(-1) * inverse_frequencies  # (block_size, head_dim / 2)
            angles = torch.cat((angles, angles), dim=-1)
            self._tables[key] = (angles.cos().to(dtype), angles.sin().to(dtype))
        return self._tables[key]

    def forward(self, x: torch.Tensor, layout: AttentionLayout) -> tuple[torch.Tensor, AttentionLayout]:
        cos, sin = self.tables(x.device, x.dtype)
        # (B or 1, T) positions -> (B or 1, 1, T, head_dim)
        rotary = (F.embedding(layout.positions, cos).unsqueeze(1), F.embedding(layout.positions, sin).unsqueeze(1))
        return x, replace(layout, rotary=rotary)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """The head slopes of ALiBi: a geometric sequence from 2^(-8/n) (Press et al., 2022, with their rule for
    a head count that is not a power of two: the closest power's slopes, then every other one of twice it)."""
    closest = 2 ** math.floor(math.log2(n_head))
    slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    slopes += [2 ** (-8 * (i + 1) / (2 * closest)) for i in range(0, 2 * (n_head - closest), 2)]
    return torch.tensor(slopes)


class ALiBi(nn.Module):
    """Attention with linear biases: a score penalty of slope x distance, one slope per head; no embedding."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head

    def forward(self, x: torch.Tensor, layout: AttentionLayout) -> tuple[torch.Tensor, AttentionLayout]:
        distance = layout.offsets(layout.past + x.size(1), x.device).clamp_min(0)  # later keys are masked anyway
        bias = -alibi_slopes(self.n_head).to(x.device).view(1, -1, 1, 1) * distance
        return x, replace(layout, bias=bias)


class NoPositions(nn.Module):
    """No position encoding (NoPE, Kazemnejad et al. 2023): the causal mask alone lets a model infer order."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, layout: AttentionLayout) -> tuple[torch.Tensor, AttentionLayout]:
        return x, layout
