"""The options of the built-in decoder parts (pydantic only, so registering them never imports torch).

A part's options are fields of the model config (``--set model.n_kv_head=2``), checked against the schema of
the part the config chooses; `part_options` reads them back, defaults filled in, when the part is built.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, ValidationInfo, field_validator

from cleangpt_core.config.base import StrictModel

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def part_options(config: Any, schema: type[OptionsT]) -> OptionsT:
    """The options `schema` declares, read from the model `config` (defaults for the ones it does not set)."""
    values = {name: getattr(config, name) for name in schema.model_fields if hasattr(config, name)}
    return schema.model_validate(values, context={"model": config})


class CausalAttentionOptions(StrictModel):
    """Multi-head causal attention: grouped-query heads, QK-norm and q/k/v biases."""

    n_kv_head: PositiveInt | None = Field(
        None, description="key/value heads, dividing n_head (None: n_head; 1: multi-query attention)"
    )
    qk_norm: bool = Field(False, description="RMS-normalise each head's queries and keys (OLMo 2, Qwen 3)")
    qkv_bias: bool | None = Field(None, description="biases on the q/k/v projection (None: as `bias`; Qwen2: True)")

    @field_validator("n_kv_head")
    @classmethod
    def _kv_heads_divide_heads(cls, value: int | None, info: ValidationInfo) -> int | None:
        model = (info.context or {}).get("model")
        n_head = getattr(model, "n_head", None)
        if value is not None and n_head is not None and n_head % value:
            raise ValueError(f"n_kv_head={value} does not divide n_head={n_head}")
        return value


class MLPOptions(StrictModel):
    """GPT-2's MLP and Primer's squared-ReLU MLP."""

    ffn_hidden: PositiveInt | None = Field(None, description="hidden width (None: 4 x n_embd)")


class SwiGLUOptions(StrictModel):
    """Llama's gated MLP."""

    ffn_hidden: PositiveInt | None = Field(
        None, description="hidden width (None: 2/3 of 4 x n_embd, rounded up to ffn_multiple_of)"
    )
    ffn_multiple_of: PositiveInt = Field(32, description="round the default hidden width up to a multiple of this")


class NormOptions(StrictModel):
    """LayerNorm and RMSNorm."""

    norm_eps: PositiveFloat = Field(1e-5, description="added to the variance (mean square) before the square root")


class RotaryOptions(StrictModel):
    """Rotary position embedding (RoPE)."""

    rope_base: PositiveFloat = Field(10000.0, description="base of the rotation frequencies (Llama 3: 500000)")
