"""Attention parts: called as ``attn(x, layout, kv_cache)`` on (B, T, n_embd), built as ``cls(config, layer_index)``.

The built-in one is causal multi-head attention with one fused q/k/v projection (`c_attn`, GPT-2's name),
grouped-query heads and optional QK-norm. Positions reach it through the layout: `layout.rotate` applies
rotary embeddings, `layout.attend` applies the causal/padding mask and an ALiBi bias, and runs the fused
kernel (`F.scaled_dot_product_attention`; on a CPU, two matmuls, which are faster there). Keys go
into the cache after rotation, so a cached key never needs its position again.
"""

from __future__ import annotations

import torch
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.config.parts import CausalAttentionOptions, part_options
from cleangpt_core.model.kv_cache import AttentionLayout, KVCache
from cleangpt_core.model.linear import Linear


class CausalSelfAttention(nn.Module):
    """Causal self-attention; `n_kv_head` key/value heads are shared by groups of query heads (GQA)."""

    residual_projections = ("c_proj",)  # writes into the residual stream: GPT-2's scaled initialisation

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        options = part_options(config, CausalAttentionOptions)
        self.layer_index = layer_index  # which slot of the KV cache is ours
        self.n_head = config.n_head
        self.n_kv_head = options.n_kv_head or config.n_head
        self.head_dim = config.n_embd // config.n_head
        qkv_bias = config.bias if options.qkv_bias is None else options.qkv_bias
        self.c_attn = Linear(config.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=qkv_bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        # QK-norm keeps attention logits from growing without bound in long or low-precision runs.
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if options.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if options.qk_norm else None
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, layout: AttentionLayout, kv_cache: KVCache | None) -> torch.Tensor:
        batch, length, width = x.shape
        # (B, T, (H + 2 H_kv) D) -> (B, H + 2 H_kv, T, D), split into q, k, v along the heads: views, no copies
        qkv = self.c_attn(x).view(batch, length, self.n_head + 2 * self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k, v = qkv.split((self.n_head, self.n_kv_head, self.n_kv_head), dim=1)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = layout.rotate(q, k)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_index, k, v)
        y = layout.attend(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, length, width)
        return self.resid_dropout(self.c_proj(y))
