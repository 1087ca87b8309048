"""``cleangpt list-components`` and ``cleangpt show-config``: what is installed, and how to configure it."""

from __future__ import annotations

import json
import shutil
import textwrap
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from cleangpt_core.config.parts import PartChoice
from cleangpt_core.errors import UnknownComponentError
from cleangpt_core.isolation import describe_error, plugin_code, safe_repr
from cleangpt_core.plugin_api import KINDS, Component
from cleangpt_core.registry import PluginFailure, get_registry


def _default(field: FieldInfo) -> Any:
    """A field's default; a default factory is plugin code, so what it raises is shown, not raised."""
    with plugin_code() as outcome:
        value = field.get_default(call_default_factory=True)
    if outcome.error is not None:
        return f"<default factory raised {describe_error(outcome.error)}>"
    return value


def schema_defaults(schema: type[BaseModel] | None) -> dict[str, Any]:
    """The default value of every field that has one, as JSON-ready data (a value JSON cannot hold: its repr)."""
    if schema is None:
        return {}
    return {
        name: to_jsonable_python(_default(field), fallback=safe_repr)
        for name, field in schema.model_fields.items()
        if not field.is_required()
    }


def describe_component(component: Component) -> dict[str, Any]:
    """A component as JSON-ready data, with its config JSON Schema and defaults.

    A schema pydantic cannot express as JSON Schema (a field of an arbitrary type) gives
    ``"config_schema": null`` and the reason in ``config_schema_error``, so one plugin cannot break the
    listing for everyone.
    """
    schema = component.config_schema
    described = {
        "name": component.name,
        "kind": component.kind,
        "summary": component.summary,
        "distribution": component.distribution,
        "version": component.version,
        "aliases": list(component.aliases),
        "target": component.target,
        "config_schema": None,
        "defaults": schema_defaults(schema),
    }
    if schema is not None:
        with plugin_code() as outcome:
            described["config_schema"] = schema.model_json_schema()
        if outcome.error is not None:
            described["config_schema_error"] = describe_error(outcome.error)
    return described


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it, a Literal's allowed values spelled out: `int | None`,
    `'constant' | 'cosine'`, `list[str]`. Constraints (`Annotated[int, Gt(0)]`) show as their base type."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(value) for value in args)
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None:
        return f"{type_name(origin)}[{', '.join(type_name(arg) for arg in args)}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _describe_failure(failure: PluginFailure) -> dict[str, Any]:
    return {
        "plugin": failure.plugin,
        "distribution": failure.distribution,
        "version": failure.version,
        "entry_point": failure.entry_point,
        "error": failure.error,
        "incompatible": failure.incompatible,
    }


# A kind's heading in the listing, where adding an "s" does not make its plural.
HEADINGS = {
    "attention": "attention parts",
    "feedforward": "feed-forward parts",
    "norm": "norms",
    "position": "position encodings",
    "residual": "residual wirings",
}


def _table(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> list[str]:
    """Left-aligned columns; the summary column wraps onto further lines to fit the terminal (never cut)."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    terminal = shutil.get_terminal_size((120, 24)).columns
    summary_column = headers.index("summary")
    fixed = sum(w for i, w in enumerate(widths) if i != summary_column) + 2 * (len(headers) - 1) + 2
    widths[summary_column] = max(20, min(widths[summary_column], terminal - fixed))

    def lines(cells: tuple[str, ...]) -> list[str]:
        summary = textwrap.wrap(cells[summary_column], widths[summary_column]) or [""]
        rows_out = []
        for number, piece in enumerate(summary):
            shown = [piece if i == summary_column else (c if number == 0 else "") for i, c in enumerate(cells)]
            rows_out.append("  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(shown)).rstrip())
        return rows_out

    return [line for row in [headers, *rows] for line in lines(row)]


@click.command("list-components")
@click.option("--kind", type=click.Choice(KINDS), help="Show only components of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with each component's config schema and defaults.")
def list_components(kind: str | None, as_json: bool) -> None:
    """List installed tokenizers, architectures, trainers and samplers, and any broken plugin."""
    registry = get_registry()
    components = registry.components(kind)
    if as_json:
        payload = {
            "components": [describe_component(c) for c in components],
            "failures": [_describe_failure(f) for f in registry.failures],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    shadowed = {id(component) for component in registry.shadowed}
    for group in [kind] if kind else KINDS:
        rows = [
            (
                c.name + (" (shadowed)" if id(c) in shadowed else ""),
                ", ".join(c.aliases),
                c.summary,
                c.distribution,
                c.version,
            )
            for c in components
            if c.kind == group
        ]
        click.secho(HEADINGS.get(group, f"{group}s"), bold=True)
        headers = ("name", "aliases", "summary", "distribution", "version")
        click.echo("\n".join(_table(rows, headers)) if rows else "  (none)")
        click.echo()
    for component in registry.shadowed:
        click.echo(
            f"note: {component.kind} {component.name!r} from {component.distribution} is shadowed by the "
            f"built-in; use {component.qualified_name!r} to pick it"
        )
    if registry.failures:
        click.secho("plugins that failed to load", bold=True, fg="red")
        for failure in registry.failures:
            click.echo(f"  {failure.describe()}")


def _find_component(name: str, kind: str | None) -> Component:
    registry = get_registry()
    kinds = [kind] if kind else list(KINDS)
    found = []
    for candidate_kind in kinds:
        try:
            found.append(registry.get(candidate_kind, name))
        except UnknownComponentError:
            continue
    if not found:
        names = sorted({c.name for c in registry.components(kind)}, key=str.lower)
        raise UnknownComponentError(f"no component called {name!r}; installed: {', '.join(names)}")
    if len(found) > 1:
        kinds_found = ", ".join(c.kind for c in found)
        raise UnknownComponentError(f"{name!r} names a component of several kinds ({kinds_found}); add --kind")
    return found[0]


@click.command("show-config")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), help="The component's kind, when a name is used by several.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON Schema and defaults.")
def show_config(name: str, kind: str | None, as_json: bool) -> None:
    """Show a component's configuration fields, types, defaults and descriptions."""
    component = _find_component(name, kind)
    if as_json:
        click.echo(json.dumps(describe_component(component), indent=2))
        return
    click.secho(f"{component.kind} {component.name} ({component.distribution} {component.version})", bold=True)
    click.echo(f"  {component.summary}")
    if component.aliases:
        click.echo(f"  also called: {', '.join(component.aliases)}")
    schema = component.config_schema
    if schema is None or not schema.model_fields:
        click.echo("  no configuration options")
        return
    recipe = _recipe_values(component)
    rows = _field_rows(schema)
    headers = ("field", "type", "default", "summary")
    if recipe is not None:
        headers = ("field", "type", "default", "recipe", "summary")
        rows = [(*row[:3], _recipe_value(recipe, row[0]), row[3]) for row in rows]
        click.echo("  'recipe': what `cleangpt train` runs with (configs/default.yaml), where it sets the field")
    click.echo("\n".join(_table(rows, headers)))


def _field_rows(schema: type[BaseModel], prefix: str = "") -> list[tuple[str, ...]]:
    """One row per field; a decoder part's section is followed by its default part's options, as
    ``attention.n_kv_head`` (the key a config or ``--set model.attention.n_kv_head=2`` gives it by)."""
    rows = []
    for field_name, field in schema.model_fields.items():
        default = "required" if field.is_required() else safe_repr(_default(field))
        if field.annotation is PartChoice:
            rows.append((prefix + field_name, "part", default, field.description or ""))
            options = get_registry().get(field_name, str(field.default)).config_schema
            rows += _field_rows(options, f"{prefix}{field_name}.") if options is not None else []
        else:
            rows.append((prefix + field_name, type_name(field.annotation), default, field.description or ""))
    return rows


def _recipe_values(component: Component) -> dict[str, object] | None:
    """The default recipe's values for `component`'s fields, when the recipe uses it (None otherwise)."""
    from cleangpt_core.config.experiment import ExperimentConfig

    recipe = ExperimentConfig()
    if component.kind == "architecture":
        chosen, values = recipe.model.model_type, recipe.model.model_dump(mode="json")
    else:
        section = {"tokenizer": recipe.tokenizer, "trainer": recipe.trainer, "sampler": recipe.sampling}.get(
            component.kind, getattr(recipe, component.kind, None)
        )
        if section is None or not hasattr(section, "options"):
            return None
        chosen, values = section.name, section.options
    return values if get_registry().get(component.kind, chosen) is component else None


def _recipe_value(recipe: dict[str, object], dotted: str) -> str:
    """The recipe's value of a row's field (``attention.n_kv_head`` reads a part's section), or blank."""
    value: object = recipe
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return ""
        value = value[key]
    if isinstance(value, dict) and "name" in value:  # a part's section: its options have rows of their own
        value = value["name"]
    return safe_repr(value)
