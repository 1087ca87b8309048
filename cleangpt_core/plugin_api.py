"""What a plugin author imports: the hook marker, the component description and the API version.

A plugin module states `CLEANGPT_PLUGIN_API = "1.6"` (the version it was written for) and implements
hooks from `cleangpt_core.hookspecs` with `@hookimpl`. This module imports neither torch nor pydantic,
so that discovering plugins stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

PROJECT_NAME: Final = "cleangpt"
ENTRY_POINT_GROUP: Final = "cleangpt"

# The hook API this core provides, as "MAJOR.MINOR". A plugin written for MAJOR.m works with every
# core of the same MAJOR whose MINOR is at least m: minors only add hooks or opt-in hook arguments.
# 1.1 added the five part kinds and their registration hooks; 1.2 the optimizer and schedule kinds and theirs;
# 1.3 exports `cleangpt_core.model.Linear`; 1.4 gives each decoder part its own config section (its options
# reach it alone, in the `PartConfig` it is built from) and the decoder the part classes `resolve_parts` found;
# 1.5 adds muP: `ParameterRoles.mup_width_multiplier` and `applies_mup` for optimizers, and
# `AttentionLayout.score_scale` for attention parts; 1.6 lets a part state the layers that write into the
# residual stream (`residual_projections`, GPT-2's scaled initialisation), which were those named `c_proj`.
# Plugins written for 1.0 to 1.5 work unchanged.
PLUGIN_API_VERSION: Final = "1.6"

# The parts a decoder is composed of (see `cleangpt_core.model.decoder`), each a kind of component too.
PART_KINDS: Final = ("attention", "feedforward", "norm", "position", "residual")
# How a model is trained beyond the trainer's loop: the optimizer and its learning-rate schedule.
TRAINING_KINDS: Final = ("optimizer", "schedule")
KINDS: Final = ("tokenizer", "architecture", "trainer", "sampler", *PART_KINDS, *TRAINING_KINDS)

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


def load_object(target: str) -> Any:
    """Import `"package.module:attribute"` and return the attribute."""
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Component:
    """The description of one component, returned by a registration hook.

    `target` is an import path (`"package.module:Class"`) loaded only when the component is used, so
    listing components never imports the heavy module behind it. `distribution` and `version` are
    filled in by the registry from the plugin's installed distribution; a plugin leaves them empty.
    """

    name: str
    kind: str
    summary: str
    target: str
    config_schema: type[BaseModel] | None = None
    aliases: tuple[str, ...] = ()
    distribution: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        # Every command reads these fields of every component: a wrong type fails here, inside its plugin's
        # hook, and a str subclass is stored as the plain str it stands for (its own methods never run again).
        for field_name in ("name", "kind", "summary", "target"):
            value = getattr(self, field_name)
            if not isinstance(value, str):
                raise TypeError(f"component {field_name} must be a str, got {type(value).__name__}")
            object.__setattr__(self, field_name, str.__str__(value))
        aliases = self.aliases
        if not isinstance(aliases, tuple | list) or not all(isinstance(alias, str) for alias in aliases):
            raise TypeError(f"component {self.name!r}: aliases must be a tuple of str")
        object.__setattr__(self, "aliases", tuple(str.__str__(alias) for alias in aliases))
        if self.kind not in KINDS:
            raise ValueError(f"component {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if ":" in self.name:
            raise ValueError(f"component {self.name!r}: names may not contain ':'")
        if ":" not in self.target:
            raise ValueError(f"component {self.name!r}: target must look like 'module:attribute'")

    @property
    def qualified_name(self) -> str:
        """`distribution:name`, the form that picks one of two components with the same name."""
        return f"{self.distribution}:{self.name}"

    def load(self) -> Any:
        """Import and return the implementation (a class or a function)."""
        return load_object(self.target)


@dataclass(frozen=True)
class CommandSpec:
    """A CLI command a plugin adds: `target` points at a `click.Command`, imported only when run."""

    name: str
    summary: str
    target: str
    distribution: str = ""
    version: str = ""

    def load(self) -> Any:
        """Import and return the click command."""
        return load_object(self.target)
