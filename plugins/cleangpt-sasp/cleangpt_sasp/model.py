"""SASP: the simplified parallel transformer block of He & Hofmann, "Simplifying Transformer Blocks" (ICLR 2024).

Each block computes, with no skip connection around it,

    x_out = beta_SA * ShapedAttn(Norm(x)) + beta_FF * MLP(Norm(x))

where shaped attention mixes values V (the input itself unless value matrices are on) with

    A = alpha * I + beta * softmax(Q K^T / sqrt(d_h) + M) - gamma * C,   C[i, j] = 1 / (i + 1) for j <= i,

alpha, beta, gamma per head, all 1 at init. The query weights start at zero, so the softmax starts as the
uniform causal matrix C and cancels against the centring term: at init A = I and the attention sub-block
is the identity, which is what lets signal propagate without skips. Embeddings, the final norm and the
tied output head are Vanilla's. See the plugin README for the equations and options.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.model import AttentionLayout, Decoder, KVCache, Linear, PartClasses, part_options
from cleangpt_sasp.config import SASPConfig, ShapedAttentionOptions, SkiplessOptions


def make_norm(kind: str, width: int, bias: bool) -> nn.Module:
    """RMS norm (the paper's choice), layer norm, or none."""
    if kind == "rms":
        return nn.RMSNorm(width, eps=1e-6)
    if kind == "layer":
        return nn.LayerNorm(width, bias=bias)
    return nn.Identity()


def sasp_norm(config: SASPConfig) -> nn.Module:
    """The norm SASPConfig.norm names, built as a norm part is."""
    return make_norm(config.norm, config.n_embd, config.bias)


def uniform_average(values: torch.Tensor, query: torch.Tensor, layout: AttentionLayout) -> torch.Tensor:
    """C V for cached or padded calls: each query's mean over the keys it may see (the real ones up to itself).

    It is attention with every score zero under the very mask the softmax term uses, so at init (zero
    queries) the two terms cancel exactly. Shapes are (B, H, T, head_dim).
    """
    if layout.mask is None and not layout.is_causal:  # one query that sees every cached key
        return values.mean(dim=2, keepdim=True)
    return F.scaled_dot_product_attention(
        torch.zeros_like(query), values, values, attn_mask=layout.mask, is_causal=layout.is_causal
    )


class ShapedAttention(nn.Module):
    """Shaped attention with identity values and no output projection by default.

    Also the `shaped` attention part of any preset: rotary positions turn its queries and keys (zero queries
    stay zero, so it is still the identity at init), an ALiBi bias shapes its softmax term.
    """

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        options = part_options(config, ShapedAttentionOptions)
        self.layer_index = layer_index
        self.n_head = config.n_head
        width = config.n_embd
        self.c_qk = Linear(width, 2 * width, bias=config.bias)
        has_value = options.use_v or (layer_index == 0 and options.first_layer_value)
        # Values X(I + W_V) and projection Y(I + W_P) with W zero at init: identity until trained.
        self.value_delta = Linear(width, width, bias=False) if has_value else None
        self.proj_delta = Linear(width, width, bias=False) if options.use_proj else None
        # Per-head gains, shaped (H, 1) to broadcast over (B, T, H, head_dim).
        self.alpha = nn.Parameter(torch.ones(config.n_head, 1))
        self.beta = nn.Parameter(torch.ones(config.n_head, 1))
        self.gamma = nn.Parameter(torch.ones(config.n_head, 1))
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, layout: AttentionLayout, kv_cache: KVCache | None) -> torch.Tensor:
        batch, length, width = x.shape
        head_dim = width // self.n_head
        q, k = self.c_qk(x).view(batch, length, 2, self.n_head, head_dim).permute(2, 0, 3, 1, 4)
        values = x if self.value_delta is None else x + self.value_delta(x)
        # The identity and centring terms work on (B, T, H, head_dim), the layout of x itself: no copies.
        v = values.view(batch, length, self.n_head, head_dim)
        q, all_k = layout.rotate(q, k)
        all_v = v.transpose(1, 2)
        if kv_cache is not None:
            all_k, all_v = kv_cache.update(self.layer_index, all_k, all_v)
        attended = layout.attend(q, all_k, all_v, dropout_p=self.dropout if self.training else 0.0).transpose(1, 2)
        if layout.is_causal:  # no padding, no cached prefix: C V is a running mean, O(T) not O(T^2)
            counts = torch.arange(1, length + 1, device=x.device, dtype=x.dtype).view(length, 1, 1)
            centred, centring_gain = v.cumsum(dim=1), self.gamma / counts
        else:
            centred, centring_gain = uniform_average(all_v, q, layout).transpose(1, 2), self.gamma
        # alpha * V + beta * softmax(...) V - gamma * C V, fused into two multiply-adds
        y = torch.addcmul(torch.addcmul(self.alpha * v, self.beta, attended), centring_gain, centred, value=-1.0)
        y = y.reshape(batch, length, width)
        if self.proj_delta is not None:
            y = y + self.proj_delta(y)
        return self.resid_dropout(y)

    def init_weights(self) -> None:
        """The zeros SASP relies on, after the decoder's generic initialisation (which would overwrite them):
        W_Q (the first half of the fused q/k projection) and the value/projection deltas, so A = I at init."""
        width = self.c_qk.in_features
        self.c_qk.weight[:width].zero_()
        if self.c_qk.bias is not None:
            self.c_qk.bias[:width].zero_()
        for delta in (self.value_delta, self.proj_delta):
            if delta is not None:
                nn.init.zeros_(delta.weight)


class MLP(nn.Module):
    """4x feed-forward network with ReLU (the paper's) or GELU."""

    def __init__(self, config: SASPConfig) -> None:
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.activation = nn.ReLU() if config.activation == "relu" else nn.GELU(approximate="tanh")
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.activation(self.c_fc(x))))


class SkiplessParallelBlock(nn.Module):
    """Parallel sub-blocks on one shared norm, weighted by trainable scalars, with no skip connection.

    The `skipless_parallel` residual part; SASP builds it from its own norm, shaped attention and MLP.
    """

    def __init__(self, config: ModelConfig, layer_index: int, parts: PartClasses) -> None:
        super().__init__()
        options = part_options(config, SkiplessOptions)
        self.norm = parts.norm(config)
        self.attn = parts.attention(config, layer_index)
        self.mlp = parts.feedforward(config)
        self.beta_sa = nn.Parameter(torch.tensor(options.beta_sa))
        self.beta_ff = nn.Parameter(torch.tensor(options.beta_ff))

    def forward(self, x: torch.Tensor, layout: AttentionLayout, kv_cache: KVCache | None) -> torch.Tensor:
        h = self.norm(x)
        return self.beta_sa * self.attn(h, layout, kv_cache) + self.beta_ff * self.mlp(h)


class SASPTransformerModel(Decoder):
    """A decoder of SASP blocks between Vanilla's embeddings and tied output head.

    Parameters stay float32 (train under autocast): an AdamW step on a gain near 1.0 is below half a
    bfloat16 ulp, so gains stored in bfloat16 would never move.
    """

    def __init__(self, config: ModelConfig) -> None:
        config = SASPConfig.model_validate(config.model_dump())
        parts = PartClasses(
            attention=ShapedAttention,
            feedforward=MLP,
            norm=sasp_norm,
            position=nn.Identity,  # not used by the blocks: the trunk has learned positions
            residual=SkiplessParallelBlock,
        )
        super().__init__(config, (SkiplessParallelBlock(config, i, parts) for i in range(config.n_layer)))
        # GPT-2's initialisation, then the zero queries each ShapedAttention.init_weights sets.
        self.reset_parameters()
