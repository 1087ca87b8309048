"""The pydantic base every cleanGPT schema builds on, and one-line rendering of validation errors."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from cleangpt_core.errors import ConfigError

SchemaT = TypeVar("SchemaT", bound=BaseModel)

MAX_SEED = 2**63 - 1  # seeds go to torch, numpy and Python's random; torch takes at most 64 bits


def unknown_field_message(name: str, valid: list[str], where: str) -> str:
    """An error message for a field nobody knows, suggesting the nearest valid name."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid fields: {', '.join(sorted(valid))}"
    return f"unknown field {name!r} in {where}{hint}"


class StrictModel(BaseModel):
    """A schema that rejects unknown fields with a suggestion and re-validates on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            valid = list(cls.model_fields) + [info.alias for info in cls.model_fields.values() if info.alias]
            for key in data:
                if key not in valid:
                    raise ValueError(unknown_field_message(str(key), valid, cls.__name__))
        return data


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """Render a pydantic error as one line per problem: field, value and reason."""
    problems = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] in {"value_error", "assertion_error"} or "input" not in item or isinstance(item["input"], dict):
            problems.append(f"{location}: {reason}" if location else reason)
        else:
            problems.append(f"{location}={item['input']!r}: {reason}" if location else reason)
    return "; ".join(problems)


def validate_config(schema: type[SchemaT], data: Any, where: str = "") -> SchemaT:
    """Validate `data` against `schema`, raising `ConfigError` with a readable message."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"invalid {where or schema.__name__}: {format_validation_error(error)}") from None


def flatten_config(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"section.field": value}``: the names ``--set`` takes and trackers show."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat
