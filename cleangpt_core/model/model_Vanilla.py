"""Vanilla: a GPT-2 style pre-LN decoder, read top-down in the order of the forward pass.

Learned positions, fused causal attention (`F.scaled_dot_product_attention`), a 4x GELU MLP, tied input
and output embeddings and GPT-2's initialisation, where the projections that write into the residual
stream are scaled by 1/sqrt(2 * n_layer) so the stream's variance does not grow with depth. Parameter
names follow Hugging Face's GPT-2 (`transformer.h.0.attn.c_attn`, ...), which keeps weight conversion
(`cleangpt_core.model.hf_interop`) a matter of transposes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.config import ModelConfig, VanillaConfig
from cleangpt_core.model.decoder import LearnedPositionDecoder
from cleangpt_core.model.kv_cache import AttentionLayout, KVCache


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused q/k/v projection."""

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index  # which slot of the KV cache is ours
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, layout: AttentionLayout, kv_cache: KVCache | None) -> torch.Tensor:
        batch, length, width = x.shape
        # (B, T, 3C) -> three (B, n_head, T, head_dim) tensors
        q, k, v = self.c_attn(x).view(batch, length, 3, self.n_head, width // self.n_head).permute(2, 0, 3, 1, 4)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_index, k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=layout.mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=layout.is_causal,
        )
        y = y.transpose(1, 2).reshape(batch, length, width)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network: 4x expansion with GPT-2's tanh-approximated GELU."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_index)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, layout: AttentionLayout, kv_cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), layout, kv_cache)
        return x + self.mlp(self.ln_2(x))


class VanillaTransformerModel(LearnedPositionDecoder):
    """The GPT-2 architecture (pre-LN, learned positions, tied embeddings)."""

    def __init__(self, config: ModelConfig) -> None:
        config = VanillaConfig.model_validate(config.model_dump())
        super().__init__(config, (Block(config, i) for i in range(config.n_layer)))
        self.reset_parameters()
