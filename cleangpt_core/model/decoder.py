"""The decoder trunk GPT-style architectures share: embeddings, a stack of blocks, the tied output head.

An architecture built on `LearnedPositionDecoder` writes only its block (called as
``block(x, layout, kv_cache)``) and, if it needs one, its own initialisation on top of GPT-2's. The trunk
brings the rest of the model contract: positions counted over real tokens (so left padding changes
nothing), the key/value cache, `logits_to_keep` for decoding, and the loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.model.base import CausalLanguageModel
from cleangpt_core.model.kv_cache import KVCache, positions_and_layout


class LearnedPositionDecoder(CausalLanguageModel):
    """Token and learned position embeddings, the given blocks, a final LayerNorm and the tied output head.

    Parameter names follow Hugging Face's GPT-2 (`transformer.wte`, `transformer.h.0...`, `lm_head`).
    """

    def __init__(self, config: ModelConfig, blocks: Iterable[nn.Module]) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "wpe": nn.Embedding(config.block_size, config.n_embd),
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList(blocks),
                "ln_f": nn.LayerNorm(config.n_embd, bias=config.bias),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying (Press & Wolf, 2017)

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the layers that write into the
        residual stream (`c_proj`) scaled by 1/sqrt(2 * n_layer) so its variance does not grow with depth.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear | nn.Embedding):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
                    if getattr(module, "bias", None) is not None:
                        nn.init.zeros_(module.bias)
            for name, parameter in self.named_parameters():
                if name.endswith("c_proj.weight"):  # GPT-2 paper, section 2.3
                    nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

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
        # Positions count real tokens only, so a left-padded row gets the logits it gets unpadded.
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
