"""Model configuration: the fields every architecture shares, and `GPTConfig`, which checks the rest.

`GPTConfig(model_type="SASP", use_v=True, ...)` is validated against the schema the SASP plugin registers,
so an architecture's own fields are accepted, and a field no schema knows is an error naming the nearest
valid one. Architectures subclass `ModelConfig` for their schema.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydantic import ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from cleangpt_core.config.base import StrictModel, format_validation_error, unknown_field_message
from cleangpt_core.errors import UnknownComponentError
from cleangpt_core.plugin_api import PART_KINDS


class ModelConfig(StrictModel):
    """The shape of a GPT-style decoder, shared by every architecture."""

    model_type: str = Field("Vanilla", description="registered architecture name")
    vocab_size: PositiveInt = Field(50257, description="size of the tokenizer's vocabulary")
    n_layer: PositiveInt = Field(6, description="number of transformer blocks")
    n_head: PositiveInt = Field(6, description="attention heads per block")
    n_embd: PositiveInt = Field(384, description="residual stream width; divisible by n_head")
    block_size: PositiveInt = Field(256, description="longest sequence (context) the model accepts")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability; 0 is best for short runs")
    bias: bool = Field(True, description="biases in linear layers and norms (True matches GPT-2)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        return self

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head


class DecoderConfig(ModelConfig):
    """A decoder composed of registered parts, one of each kind, named here; their options are fields too.

    Each part's options (``n_kv_head``, ``rope_base``...) are validated against the schema the chosen part
    registers, so ``--set model.position=alibi`` or ``--set model.n_kv_head=2`` fails before any work
    starts when the part or the option does not exist. Presets are subclasses that change the defaults.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    attention: str = Field("causal", description="attention part (cleangpt list-components --kind attention)")
    feedforward: str = Field("gelu", description="feed-forward part")
    norm: str = Field("layernorm", description="normalisation part, in every block and before the head")
    position: str = Field("learned", description="position encoding part")
    residual: str = Field("pre_norm", description="how a block wires its sub-blocks")
    tie_embeddings: bool = Field(True, description="share the token embedding with the output head")
    # modded-nanogpt's: every block starts as the identity, so early training shapes the embeddings and head first
    zero_init_projections: bool = Field(
        False, description="initialise the output projections (c_proj) of attention and MLP at zero"
    )
    logit_softcap: PositiveFloat | None = Field(
        None, description="squash logits into (-cap, cap) as cap * tanh(logits / cap) (Gemma 2); None: off"
    )

    @model_validator(mode="before")
    @classmethod
    def _validate_parts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from cleangpt_core.registry import get_component  # the registry imports config schemas from plugins

        data = dict(data)
        shared = {name: data.get(name, field.default) for name, field in cls.model_fields.items()}
        claimed: set[str] = set()
        for kind in PART_KINDS:
            name = str(shared[kind])
            try:
                component = get_component(kind, name)
            except UnknownComponentError as error:
                raise ValueError(error.args[0]) from None
            data[kind] = name if ":" in name else component.name
            schema = component.config_schema
            if schema is None:
                continue
            claimed |= set(schema.model_fields)
            given = {key: data[key] for key in schema.model_fields if key in data}
            try:
                options = schema.model_validate(given, context={"model": SimpleNamespace(**shared)})
            except ValidationError as error:
                problem = format_validation_error(error)
                raise ValueError(f"invalid options of {kind} {component.name!r}: {problem}") from None
            data.update({key: getattr(options, key) for key in given if key not in cls.model_fields})
        valid = sorted(set(cls.model_fields) | claimed)
        for key in data:
            if key not in valid:
                raise ValueError(unknown_field_message(str(key), valid, f"{cls.__name__} with these parts"))
        return data


class VanillaConfig(DecoderConfig):
    """The Vanilla preset (GPT-2): learned positions, LayerNorm, GELU MLP, pre-norm, multi-head attention."""


class LlamaConfig(DecoderConfig):
    """The Llama preset: rotary positions, RMSNorm, SwiGLU, pre-norm, grouped-query attention, no biases.

    Grouped-query attention is on with ``n_kv_head`` < ``n_head``; by default every head has its own keys,
    as in Llama 2 7B. The output head is separate from the token embedding unless ``tie_embeddings``.
    """

    model_type: str = Field("Llama", description="registered architecture name")
    bias: bool = Field(False, description="biases in linear layers and norms (Llama has none)")
    feedforward: str = Field("swiglu", description="feed-forward part")
    norm: str = Field("rmsnorm", description="normalisation part, in every block and before the head")
    position: str = Field("rotary", description="position encoding part")
    tie_embeddings: bool = Field(False, description="share the token embedding with the output head")


class GPTConfig(ModelConfig):
    """A model config for any registered architecture, validated against that architecture's schema.

    Extra keyword arguments are the architecture's own fields (see ``cleangpt show-config NAME``).
    `model_type` is normalised to the registered name (``"sasp"`` becomes ``"SASP"``).
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _validate_for_architecture(cls, data: Any) -> Any:
        if isinstance(data, ModelConfig):
            data = data.model_dump()
        if not isinstance(data, dict):
            return data
        schema, model_type = architecture_schema(str(data.get("model_type", "Vanilla")))
        try:
            validated = schema.model_validate({**data, "model_type": model_type})
        except ValidationError as error:
            raise ValueError(f"invalid {model_type} config: {format_validation_error(error)}") from None
        return validated.model_dump()

    def for_architecture(self) -> ModelConfig:
        """This config as an instance of its architecture's own schema (typed fields, defaults filled)."""
        schema, _ = architecture_schema(self.model_type)
        return schema.model_validate(self.model_dump())


def architecture_schema(model_type: str) -> tuple[type[ModelConfig], str]:
    """The config schema and canonical name of a registered architecture.

    The canonical name is the registered one (``"sasp"`` gives ``"SASP"``), qualified as
    ``distribution:name`` where the plain name would pick another component, so the choice survives.
    """
    from cleangpt_core.registry import get_registry  # the registry imports config schemas from plugins

    registry = get_registry()
    component = registry.get("architecture", model_type)
    schema = component.config_schema or ModelConfig
    if not issubclass(schema, ModelConfig):
        raise TypeError(f"architecture {component.qualified_name}: config_schema must subclass ModelConfig")
    return schema, registry.canonical_name(component)
