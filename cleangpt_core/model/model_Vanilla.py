"""The names Vanilla's building blocks had before the decoder was composed of parts (plugin API 1.0).

Vanilla is now a preset of `cleangpt_core.model.decoder.Decoder` (see `cleangpt_core.config.VanillaConfig`);
plugins written against these names keep working: `CausalSelfAttention(config, layer_index)`,
`MLP(config)`, `Block(config, layer_index)` (pre-LN, LayerNorm) and `VanillaTransformerModel(config)`.
"""

from __future__ import annotations

from cleangpt_core.config import ModelConfig, VanillaConfig
from cleangpt_core.model.attention import CausalSelfAttention
from cleangpt_core.model.decoder import Decoder
from cleangpt_core.model.factory import resolve_parts
from cleangpt_core.model.feedforward import MLP
from cleangpt_core.model.residual import PreNormBlock

__all__ = ["MLP", "Block", "CausalSelfAttention", "VanillaTransformerModel"]


class Block(PreNormBlock):
    """Vanilla's pre-LN block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__(config, layer_index, resolve_parts(VanillaConfig.model_construct()))


class VanillaTransformerModel(Decoder):
    """The Vanilla preset built from any model config's shared fields."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(VanillaConfig.model_validate(config.model_dump()))
