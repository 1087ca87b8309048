"""Residual wirings: the blocks, built as ``cls(config, layer_index, parts)`` and called as
``block(x, layout, kv_cache)``. A block builds its sub-blocks from the chosen part classes and wires them.

Sub-block names are GPT-2's (`ln_1`, `attn`, `ln_2`, `mlp`), so a pre-norm stack of the default parts has
exactly Hugging Face GPT-2's parameter names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.model.kv_cache import AttentionLayout, KVCache

if TYPE_CHECKING:
    from cleangpt_core.model.factory import PartClasses


class PreNormBlock(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)): GPT-2 and Llama. The residual stream is never normalised,
    which keeps gradients flowing through deep stacks (Xiong et al., 2020)."""

    def __init__(self, config: ModelConfig, layer_index: int, parts: PartClasses) -> None:
        super().__init__()
        self.ln_1 = parts.norm(config)
        self.attn = parts.attention(config, layer_index)
        self.ln_2 = parts.norm(config)
        self.mlp = parts.feedforward(config)

    def forward(self, x: torch.Tensor, layout: AttentionLayout, kv_cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), layout, kv_cache)
        return x + self.mlp(self.ln_2(x))


class ParallelBlock(nn.Module):
    """x + attn(norm(x)) + mlp(norm(x)): GPT-J and PaLM. One norm, and both sub-blocks read the same input,
    which PaLM reports 15% faster at scale for no loss in quality."""

    def __init__(self, config: ModelConfig, layer_index: int, parts: PartClasses) -> None:
        super().__init__()
        self.ln_1 = parts.norm(config)
        self.attn = parts.attention(config, layer_index)
        self.mlp = parts.feedforward(config)

    def forward(self, x: torch.Tensor, layout: AttentionLayout, kv_cache: KVCache | None) -> torch.Tensor:
        normed = self.ln_1(x)
        return x + self.attn(normed, layout, kv_cache) + self.mlp(normed)


class PostNormBlock(nn.Module):
    """norm(x + attn(x)), then norm(x + mlp(x)): the original Transformer (Vaswani et al., 2017); it needs
    learning-rate warm-up to train stably."""

    def __init__(self, config: ModelConfig, layer_index: int, parts: PartClasses) -> None:
        super().__init__()
        self.attn = parts.attention(config, layer_index)
        self.ln_1 = parts.norm(config)
        self.mlp = parts.feedforward(config)
        self.ln_2 = parts.norm(config)

    def forward(self, x: torch.Tensor, layout: AttentionLayout, kv_cache: KVCache | None) -> torch.Tensor:
        x = self.ln_1(x + self.attn(x, layout, kv_cache))
        return self.ln_2(x + self.mlp(x))
