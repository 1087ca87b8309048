"""Attention as two matmuls and a float32 softmax: one of the two candidates for `attention`, beside SDPA.

On some CPUs SDPA's fused kernel is slower than this (an AMD Zen 5 without AMX: in bfloat16 it took twice as
long for forward and backward as this at nanoGPT's character shape and 1.1x at GPT-2 small's; in float32
1.28x and 1.24x). Unlike SDPA, this keeps the (T x T_keys) attention weights for the backward, so in float32
it is a candidate only up to `MATMUL_ATTENTION_MAX_KEYS` keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Up to this many keys float32 attention may run as two matmuls: the weights it keeps for the backward then take
# at most 256 KiB a head and row of the batch (bf16's weights are half as large, and it may at any length).
MATMUL_ATTENTION_MAX_KEYS = 256


def matmul_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    dropout_p: float,
    scale: float | None = None,
) -> torch.Tensor:
    """What `F.scaled_dot_product_attention` computes, as two matmuls and a float32 softmax.

    `mask` is boolean (True: may attend) or an additive bias; `is_causal` builds the causal mask.
    """
    if k.size(1) != q.size(1):  # grouped-query attention: each key/value head serves a group of query heads
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
        v = v.repeat_interleave(q.size(1) // v.size(1), dim=1)
    scores = (q * (q.size(-1) ** -0.5 if scale is None else scale)) @ k.transpose(-2, -1)
    if is_causal:
        mask = torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype)
    if dropout_p:
        weights = F.dropout(weights, dropout_p)
    return weights @ v
