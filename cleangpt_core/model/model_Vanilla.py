"""Vanilla: a GPT-2 style pre-LN decoder, read top-down in the order of the forward pass.

Learned positions, fused causal attention (`F.scaled_dot_product_attention`), a 4x GELU MLP, tied input
and output embeddings and GPT-2's initialisation, where the projections that write into the residual
stream are scaled by 1/sqrt(2 * n_layer) so the stream's variance does not grow with depth. Parameter
names follow Hugging Face's GPT-2 (`transformer.h.0.attn.c_attn`, ...), which keeps weight conversion
(`cleangpt_core.model.hf_interop`) a matter of transposes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.config import ModelConfig, VanillaConfig
from cleangpt_core.model.base import CausalLanguageModel
from cleangpt_core.model.kv_cache import AttentionLayout, KVCache, positions_and_layout


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


class VanillaTransformerModel(CausalLanguageModel):
    """The GPT-2 architecture (pre-LN, learned positions, tied embeddings)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = VanillaConfig.model_validate(config.model_dump())
        config = self.config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "wpe": nn.Embedding(config.block_size, config.n_embd),
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
                "ln_f": nn.LayerNorm(config.n_embd, bias=config.bias),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying (Press & Wolf, 2017)
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):  # residual-stream writers, GPT-2 paper section 2.3
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        logits_to_keep: int = 0,
    ) -> dict[str, torch.Tensor]:
        """Logits (B, T, vocab) and, given labels, the mean next-token loss.

        `attention_mask` (B, T) marks real tokens (1) and left padding (0); `kv_cache` continues a prefix
        decoded before; `logits_to_keep=n` computes logits for the last n positions only (0: all).
        """
        self.check_length(input_ids.size(1), kv_cache)
        positions, layout = positions_and_layout(input_ids, attention_mask, kv_cache)
        x = self.transformer.drop(self.transformer.wte(input_ids) + self.transformer.wpe(positions))
        for block in self.transformer.h:
            x = block(x, layout, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(input_ids.size(1))
        if logits_to_keep:
            x = x[:, -logits_to_keep:, :]
        logits = self.lm_head(self.transformer.ln_f(x))
        output = {"logits": logits}
        if labels is not None:
            output["loss"] = self.causal_lm_loss(logits, labels, attention_mask)
        return output
