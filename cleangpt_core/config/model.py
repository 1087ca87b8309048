"""Model configuration: the fields every architecture shares, and `GPTConfig`, which checks the rest.

`GPTConfig(model_type="SASP", use_v=True, ...)` is validated against the schema the SASP plugin registers,
so an architecture's own fields are accepted, and a field no schema knows is an error naming the nearest
valid one. Architectures subclass `ModelConfig` for their schema; the presets of the decoder subclass
`DecoderConfig`, whose parts each have a section of their own (``attention: {name: causal, n_kv_head: 2}``).
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from cleangpt_core.config.base import StrictModel, format_validation_error, unknown_field_message
from cleangpt_core.config.parts import PART_SECTION_JSON_SCHEMA, PartChoice
from cleangpt_core.errors import UnknownComponentError
from cleangpt_core.plugin_api import PART_KINDS, Component


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

    def __getattr__(self, name: str) -> Any:
        # An option of a chosen part, read by its bare name (``config.n_kv_head``) as plugin API 1.x reads it.
        try:
            return super().__getattr__(name)  # pydantic's: private attributes and extra fields
        except AttributeError:
            if name.startswith("_"):
                raise
            return _part_option(self, name)


def _part_option(config: ModelConfig, name: str) -> Any:
    """The option `name` of the chosen parts that have it, when they agree; else an AttributeError saying why."""
    fields = {**config.__dict__, **(config.__pydantic_extra__ or {})}
    found = {
        kind: choice.model_extra[name]
        for kind, choice in fields.items()
        if isinstance(choice, PartChoice) and name in (choice.model_extra or {})
    }
    if not found:
        raise AttributeError(f"{type(config).__name__!r} object has no attribute {name!r}")
    values = list(found.values())
    if any(value != values[0] for value in values):
        spelled = ", ".join(f"{kind}.{name}={value!r}" for kind, value in found.items())
        raise AttributeError(f"{name!r} differs between the parts ({spelled}); read it from the part's section")
    return values[0]


PartSection = Annotated[PartChoice, WithJsonSchema(PART_SECTION_JSON_SCHEMA)]


class DecoderConfig(ModelConfig):
    """A decoder composed of registered parts, one of each kind, each with its own section of options.

    A section is a part's name (``position: alibi``) or its name and options (``attention: {name: causal,
    n_kv_head: 2}``; without a name, the preset's part), validated against the schema the chosen part
    registers into a `PartChoice`. An option may also be given by its bare name (``n_kv_head: 2``, as
    ``--set model.n_kv_head=2``, the configs and saved runs of plugin API 1.x spell it): a shorthand for
    the same option in the section of every chosen part that declares it, applied over that section.
    Presets are subclasses that change the default parts.
    """

    # Bare option names are accepted (the shorthand above), so a config may hold keys beyond the fields.
    model_config = ConfigDict(json_schema_extra={"additionalProperties": True})

    attention: PartSection = Field("causal", description="attention part (cleangpt list-components --kind attention)")
    feedforward: PartSection = Field("gelu", description="feed-forward part")
    norm: PartSection = Field("layernorm", description="normalisation part, in every block and before the head")
    position: PartSection = Field("learned", description="position encoding part")
    residual: PartSection = Field("pre_norm", description="how a block wires its sub-blocks")
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

        sections = {kind: _section(kind, data.get(kind, cls.model_fields[kind].default)) for kind in PART_KINDS}
        components = {}
        for kind, section in sections.items():
            name = str(section.pop("name", cls.model_fields[kind].default))
            try:
                components[kind] = get_component(kind, name)
            except UnknownComponentError as error:
                raise ValueError(error.args[0]) from None
            section["name"] = name if ":" in name else components[kind].name
        shorthand = {key: value for key, value in data.items() if key not in cls.model_fields}
        _spread_shorthand(shorthand, sections, components, list(cls.model_fields), f"{cls.__name__} with these parts")
        shared = {name: data.get(name, field.default) for name, field in cls.model_fields.items()}
        model = SimpleNamespace(**{**shared, **{kind: section["name"] for kind, section in sections.items()}})
        return {
            **{key: value for key, value in data.items() if key in cls.model_fields},
            **{kind: _choice(kind, sections[kind], components[kind], model) for kind in PART_KINDS},
        }


def _section(kind: str, value: Any) -> dict[str, Any]:
    """A part section as a dict with the options given (`name` only if given): from a name, a dict or a choice."""
    if isinstance(value, PartChoice):
        return {"name": value.name, **(value.model_extra or {})}
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict):
        return dict(value)
    raise ValueError(f"{kind} must be a part name or a section {{name: ..., option: value}}, got {value!r}")


def _spread_shorthand(
    shorthand: dict[str, Any],
    sections: dict[str, dict[str, Any]],
    components: dict[str, Component],
    fields: list[str],
    where: str,
) -> None:
    """Put each bare option name into the section of every chosen part whose schema declares it."""
    for key, value in shorthand.items():
        owners = [kind for kind, component in components.items() if key in _option_names(component)]
        if not owners:
            valid = fields + sorted(set().union(*map(_option_names, components.values())))
            raise ValueError(unknown_field_message(str(key), valid, where))
        if len(owners) > 1:
            spelled = ", ".join(f"{kind}.{key}" for kind in owners)
            warnings.warn(
                f"model option {key!r} is an option of {len(owners)} parts ({', '.join(owners)}): each gets {value!r}; "
                f"set {spelled} to give them different values",
                UserWarning,
                stacklevel=2,
            )
        for kind in owners:
            sections[kind][key] = value


def _option_names(component: Component) -> set[str]:
    return set(component.config_schema.model_fields) if component.config_schema is not None else set()


def _choice(kind: str, section: dict[str, Any], component: Component, model: SimpleNamespace) -> PartChoice:
    """The part's section validated once by its schema; a schema's validators see the model as context."""
    name = section.pop("name")
    schema = component.config_schema
    if schema is None:
        if section:
            raise ValueError(f"{kind} {component.name!r} takes no options, got {', '.join(map(str, section))}")
        return PartChoice.of(name, None)
    if {"name", "options"} & set(schema.model_fields):
        raise ValueError(f"{kind} {component.name!r}: a part option may not be called 'name' or 'options'")
    try:
        options = schema.model_validate(section, context={"model": model})
    except ValidationError as error:
        raise ValueError(f"invalid options of {kind} {component.name!r}: {format_validation_error(error)}") from None
    return PartChoice.of(name, options)


class VanillaConfig(DecoderConfig):
    """The Vanilla preset (GPT-2): learned positions, LayerNorm, GELU MLP, pre-norm, multi-head attention."""


class LlamaConfig(DecoderConfig):
    """The Llama preset: rotary positions, RMSNorm, SwiGLU, pre-norm, grouped-query attention, no biases.

    Grouped-query attention is on with ``n_kv_head`` < ``n_head``; by default every head has its own keys,
    as in Llama 2 7B. The output head is separate from the token embedding unless ``tie_embeddings``.
    """

    model_type: str = Field("Llama", description="registered architecture name")
    bias: bool = Field(False, description="biases in linear layers and norms (Llama has none)")
    feedforward: PartSection = Field("swiglu", description="feed-forward part")
    norm: PartSection = Field("rmsnorm", description="normalisation part, in every block and before the head")
    position: PartSection = Field("rotary", description="position encoding part")
    tie_embeddings: bool = Field(False, description="share the token embedding with the output head")


class GPTConfig(ModelConfig):
    """A model config for any registered architecture, validated against that architecture's schema.

    Extra keyword arguments are the architecture's own fields (see ``cleangpt show-config NAME``).
    `model_type` is normalised to the registered name (``"sasp"`` becomes ``"SASP"``).
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    _validated: bool = PrivateAttr(default=False)

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
        return dict(validated)  # the values as validated: a part's section stays its `PartChoice`

    @model_validator(mode="after")
    def _remember_validation(self) -> GPTConfig:
        self._validated = True  # (on assignment too: an assignment validates the whole config again)
        return self

    def for_architecture(self) -> ModelConfig:
        """This config as an instance of its architecture's own schema (typed fields, defaults filled).

        Its values are the ones that schema validated when this config was, so they are not validated again
        (a config built without validation, `model_construct`, is validated here).
        """
        schema, _ = architecture_schema(self.model_type)
        if self._validated:
            return schema.model_construct(**dict(self))
        return schema.model_validate(self.model_dump())


# The fields that size a model: a report gives the parameter count instead of repeating them
SIZE_FIELDS = ("vocab_size", "n_layer", "n_head", "n_embd", "block_size")


def model_description(config: ModelConfig) -> str:
    """The architecture and what this config changes in it beyond its size: ``Llama + feedforward=gelu``.

    Two contenders of one architecture that differ in a part or an option then read differently in a report
    (a bare ``Llama`` for both hid the difference). A part chosen by another name shows as ``kind=name``, an
    option of a part or of the architecture as ``option=value``, each against the architecture's defaults.
    """
    schema, model_type = architecture_schema(config.model_type)
    mine = config.for_architecture() if isinstance(config, GPTConfig) else config
    default = schema.model_validate({"model_type": model_type})
    changes = []
    for name in type(mine).model_fields:
        if name in ("model_type", *SIZE_FIELDS):
            continue
        value, base = getattr(mine, name), getattr(default, name)
        if isinstance(value, PartChoice) and isinstance(base, PartChoice):
            options, base_options = value.model_extra or {}, base.model_extra or {}
            same_part = value.name == base.name
            if not same_part:
                changes.append(f"{name}={value.name}")
            changes.extend(
                f"{option}={_shown(setting)}"
                for option, setting in options.items()
                if setting is not None and (not same_part or base_options.get(option) != setting)
            )
        elif value != base:
            changes.append(f"{name}={_shown(value)}")
    return model_type if not changes else f"{model_type} + {', '.join(changes)}"


def _shown(value: Any) -> str:
    """A setting as a user writes it in ``--set`` (booleans in lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


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
