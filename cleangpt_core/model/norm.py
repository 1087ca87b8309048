"""Normalisation parts: called as ``norm(x)`` on (B, T, n_embd), built as ``cls(config)``."""

from __future__ import annotations

from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.config.parts import NormOptions, part_options


class LayerNorm(nn.LayerNorm):
    """LayerNorm (GPT-2), with a bias when the model has biases."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.n_embd, eps=part_options(config, NormOptions).norm_eps, bias=config.bias)


class RMSNorm(nn.RMSNorm):
    """RMSNorm (Zhang & Sennrich, 2019; Llama): x / rms(x) * gain, no centring and no bias."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.n_embd, eps=part_options(config, NormOptions).norm_eps)


class NoNorm(nn.Identity):
    """No normalisation."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
