"""A decoder part's section of the model config, what a part is built from, and the built-in parts' options
(pydantic only, so registering the parts never imports torch).

Each part has its own section, ``model: {attention: {name: causal, n_kv_head: 2}}``, validated once against the
chosen part's schema into a `PartChoice`. A part is built from a `PartConfig`: the model's fields with its own
options in front, so two parts with an option of the same name never see each other's value. `part_options`
reads a part's options from what it was built with: the validated options themselves, or (plugin API 1.x's
flat configs, e.g. an architecture's own schema) the fields of that name.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from cleangpt_core.config.base import StrictModel

OptionsT = TypeVar("OptionsT", bound=BaseModel)

# What a part section may be written as: a part's name, or its name and options.
PART_SECTION_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "description": "the part's registered name (its options then take their defaults)"},
        {
            "type": "object",
            "description": "the part's name (default: the preset's) and its options, as its schema declares them",
            "properties": {"name": {"type": "string"}},
            "additionalProperties": True,
        },
    ]
}


class PartChoice(BaseModel):
    """One part of a decoder, as validated: its registered name, and its options with defaults filled in.

    The options are extra fields (``config.attention.n_kv_head``), so the section dumps as it is written.
    A choice compares equal to its name and prints as it (``config.position == "rotary"``), as the part
    fields, which were names, did in plugin API 1.x.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(description="the part's registered name")
    _options: BaseModel | None = PrivateAttr(default=None)

    @classmethod
    def of(cls, name: str, options: BaseModel | None) -> PartChoice:
        """The choice of part `name` with its validated `options` (None: the part has no schema)."""
        choice = cls(name=name, **(options.model_dump() if options is not None else {}))
        choice._options = options
        return choice

    @property
    def options(self) -> BaseModel | None:
        """The options as the part's schema validated them: the object its constructor reads."""
        return self._options

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.name == other
        if isinstance(other, PartChoice):
            return (self.name, self.model_extra) == (other.name, other.model_extra)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name


class PartConfig:
    """What a part's constructor takes: the model config, with the part's own validated options in front.

    It reads as plugin API 1.x's flat model config did (``config.n_embd``, ``config.window``, part names as
    strings), but an option name means this part's option, whatever another part calls the same. A residual
    block passes the one it got to its sub-parts; each of them is built from a `PartConfig` of the same model
    with its own options (see `cleangpt_core.model.factory.BoundPart`).
    """

    __slots__ = ("model", "options")

    def __init__(self, model: Any, options: BaseModel | None) -> None:
        self.model = model.model if isinstance(model, PartConfig) else model
        self.options = options

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in PartConfig.__slots__:  # copying or half-built: nothing to forward
            raise AttributeError(name)
        if self.options is not None and name in type(self.options).model_fields:
            return getattr(self.options, name)
        value = getattr(self.model, name)
        return value.name if isinstance(value, PartChoice) else value

    def __repr__(self) -> str:
        return f"PartConfig({self.options!r} of {type(self.model).__name__})"


def part_options(config: Any, schema: type[OptionsT]) -> OptionsT:
    """The options `schema` declares, for the part built from `config`.

    From a `PartConfig`, the options validated with the model config (no second validation); from any other
    config (plugin API 1.x's flat ones), the fields of those names, defaults for the ones it does not set.
    """
    if isinstance(config, PartConfig) and isinstance(config.options, schema):
        return config.options
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

    ffn_hidden: PositiveInt | None = Field(
        None, description="hidden width (None: the part's own: 4 x n_embd; SwiGLU: 2/3 of that, rounded up)"
    )


class SwiGLUOptions(MLPOptions):
    """Llama's gated MLP: the hidden width, and what its default is rounded up to."""

    ffn_multiple_of: PositiveInt = Field(32, description="round the default hidden width up to a multiple of this")


class NormOptions(StrictModel):
    """LayerNorm and RMSNorm."""

    norm_eps: PositiveFloat = Field(1e-5, description="added to the variance (mean square) before the square root")


class RotaryOptions(StrictModel):
    """Rotary position embedding (RoPE)."""

    rope_base: PositiveFloat = Field(10000.0, description="base of the rotation frequencies (Llama 3: 500000)")
