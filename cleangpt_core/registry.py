"""Plugin discovery and the component registry.

Plugins come from the entry-point group ``cleangpt``; the core's own components come from the modules in
``BUILTIN_PLUGINS`` through the same hooks. Each plugin's hooks are called one plugin at a time so that a
plugin that fails to import, states an incompatible API version or raises in a hook is recorded as a
`PluginFailure` and skipped while every other component keeps working.

Environment variables (read when the registry is built):

- ``CLEANGPT_STRICT_PLUGINS=1``: re-raise plugin failures instead of skipping (for plugin authors).
- ``CLEANGPT_DISABLE_PLUGINS=a,b``: do not load these plugins (entry-point or distribution names).
- ``CLEANGPT_PLUGINS=a,b``: load only these third-party plugins (built-ins always load).
- ``CLEANGPT_TRACE_PLUGINS=1``: print every hook call, and which plugins answered, to stderr.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from cleangpt_core import __version__, hookspecs
from cleangpt_core.errors import (
    DuplicateComponentError,
    IncompatiblePluginError,
    PluginError,
    UnknownComponentError,
)
from cleangpt_core.isolation import describe_error, plugin_code, safe_repr
from cleangpt_core.plugin_api import (
    ENTRY_POINT_GROUP,
    KINDS,
    PLUGIN_API_VERSION,
    PROJECT_NAME,
    CommandSpec,
    Component,
)

BUILTIN_DISTRIBUTION = "cleangpt-core"
BUILTIN_PLUGINS = (
    "cleangpt_core.core_plugins.samplers",
    "cleangpt_core.core_plugins.tokenizers",
    "cleangpt_core.core_plugins.parts",
    "cleangpt_core.core_plugins.architectures",
    "cleangpt_core.core_plugins.trainers",
    "cleangpt_core.core_plugins.optim",
    "cleangpt_core.core_plugins.commands",
    "cleangpt_core.core_plugins.workflow",
    "cleangpt_core.core_plugins.trackers",
    "cleangpt_core.core_plugins.ecosystem",
)
REGISTRATION_HOOKS = {
    "tokenizer": "cleangpt_register_tokenizers",
    "architecture": "cleangpt_register_architectures",
    "trainer": "cleangpt_register_trainers",
    "sampler": "cleangpt_register_samplers",
    "attention": "cleangpt_register_attention",
    "feedforward": "cleangpt_register_feedforward",
    "norm": "cleangpt_register_norms",
    "position": "cleangpt_register_positions",
    "residual": "cleangpt_register_residuals",
    "optimizer": "cleangpt_register_optimizers",
    "schedule": "cleangpt_register_schedules",
}
COMMANDS_HOOK = "cleangpt_register_commands"
API_ATTRIBUTE = "CLEANGPT_PLUGIN_API"

ENV_STRICT = "CLEANGPT_STRICT_PLUGINS"
ENV_DISABLE = "CLEANGPT_DISABLE_PLUGINS"
ENV_ONLY = "CLEANGPT_PLUGINS"
ENV_TRACE = "CLEANGPT_TRACE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its entry-point name, where it comes from and the module that implements it."""

    name: str
    distribution: str
    version: str
    entry_point: str
    module: ModuleType = field(repr=False, compare=False)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, with enough detail to find and uninstall it."""

    plugin: str
    distribution: str
    version: str
    entry_point: str
    error: str
    incompatible: bool = False

    def describe(self) -> str:
        """One line for a terminal."""
        what = "incompatible" if self.incompatible else "broken"
        return (
            f"{what} plugin {self.plugin!r} ({self.distribution} {self.version}, "
            f"entry point {self.entry_point}): {self.error}"
        )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_names(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {_normalize(part) for part in raw.split(",") if part.strip()}


def _normalize(name: str) -> str:
    """Distribution names compare as PyPI does: case-insensitive, with '-', '_' and '.' alike."""
    return name.strip().lower().replace("_", "-").replace(".", "-")


def api_version_problem(declared: object) -> str | None:
    """Why a plugin stating `declared` cannot run on this core, or None if it can."""
    if declared is None:
        return f"does not state {API_ATTRIBUTE} (the plugin API version it was written for)"
    try:
        major, minor = (int(part) for part in str(declared).split(".")[:2])
    except ValueError:
        return f"states {API_ATTRIBUTE}={declared!r}, which is not a 'MAJOR.MINOR' version"
    core_major, core_minor = (int(part) for part in PLUGIN_API_VERSION.split("."))
    if major != core_major or minor > core_minor:
        return (
            f"written for plugin API {declared}, but this cleangpt-core {__version__} provides "
            f"{PLUGIN_API_VERSION}; install a version of the plugin made for API {core_major}.x"
        )
    return None


def _trace_before(hook_name: str, hook_impls: Any, kwargs: Any) -> None:
    """Print a hook call and the plugins it goes to, as ``CLEANGPT_TRACE_PLUGINS=1`` asks."""
    answering = ", ".join(impl.plugin_name for impl in hook_impls)
    print(f"[cleangpt trace] {hook_name}({', '.join(kwargs)}) -> {answering or 'no plugin'}", file=sys.stderr)


def _trace_after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: Any) -> None:
    """Print how a traced hook call ended."""
    if outcome.exception is not None:
        print(f"[cleangpt trace] {hook_name} raised {describe_error(outcome.exception)}", file=sys.stderr)
        return
    result = outcome.get_result()
    count = len(result) if isinstance(result, list) else int(result is not None)
    print(f"[cleangpt trace] {hook_name} answered by {count} plugin(s)", file=sys.stderr)


def _component_problem(component: Component, kind: str, hook_name: str) -> str | None:
    """Why a component a registration hook returned cannot be registered, or None if it can."""
    if component.kind != kind:
        return f"{hook_name} returned a {component.kind!r} component {component.name!r}"
    from pydantic import BaseModel  # loaded by the built-ins' schemas anyway; importing the registry stays light

    schema = component.config_schema
    if schema is not None and not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        # Listing and validation read the schema for everyone: one bad schema must not break them.
        return (
            f"{component.kind} {component.name!r} has config_schema={safe_repr(schema)}, which is not a pydantic "
            "model class; the component is skipped"
        )
    return None


class Registry:
    """Every component and command the installed plugins provide, and the plugins that failed."""

    def __init__(self, *, strict: bool = False, trace: bool = False) -> None:
        self.strict = strict
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []
        self.shadowed: list[Component] = []  # third-party components a built-in of the same name hides
        self._components: dict[str, list[Component]] = {kind: [] for kind in KINDS}
        self._commands: list[CommandSpec] = []
        self._info_by_id: dict[int, PluginInfo] = {}
        self.plugin_manager = pluggy.PluginManager(PROJECT_NAME)
        self.plugin_manager.add_hookspecs(hookspecs)
        if trace:
            self.plugin_manager.add_hookcall_monitoring(_trace_before, _trace_after)

    @property
    def hook(self) -> Any:
        """The pluggy hook relay, for calling event hooks on every plugin."""
        return self.plugin_manager.hook

    @classmethod
    def discover(cls) -> Registry:
        """Build the registry from the built-ins and the installed entry points, honouring the environment."""
        registry = cls(strict=_env_flag(ENV_STRICT), trace=_env_flag(ENV_TRACE))
        for module_name in BUILTIN_PLUGINS:
            registry.add_plugin_module(
                importlib.import_module(module_name),
                name=module_name.rsplit(".", 1)[-1],
                distribution=BUILTIN_DISTRIBUTION,
                version=__version__,
                entry_point=module_name,
            )
        registry.load_entry_points(
            metadata.entry_points(group=ENTRY_POINT_GROUP),
            blocked=_env_names(ENV_DISABLE) or set(),
            only=_env_names(ENV_ONLY),
        )
        registry.collect()
        return registry

    def load_entry_points(
        self, entry_points: Iterable[metadata.EntryPoint], *, blocked: set[str], only: set[str] | None
    ) -> None:
        """Import and register each entry point's module, recording the ones that fail."""
        seen: set[tuple[str, str]] = set()
        for entry_point in entry_points:
            dist = entry_point.dist
            distribution = dist.name if dist is not None else "unknown"
            version = dist.version if dist is not None else "unknown"
            if (distribution, entry_point.name) in seen:  # the same distribution found twice on sys.path
                continue
            seen.add((distribution, entry_point.name))
            names = {_normalize(entry_point.name), _normalize(distribution)}
            if names & blocked or (only is not None and not names & only):
                continue
            failure = PluginFailure(entry_point.name, distribution, version, entry_point.value, "")
            with plugin_code() as outcome:  # a plugin calling sys.exit() at import is a broken plugin, no more
                module = entry_point.load()
            if outcome.error is not None:
                self._fail(replace(failure, error=f"failed to import: {describe_error(outcome.error)}"), outcome.error)
                continue
            self.add_plugin_module(
                module, name=entry_point.name, distribution=distribution, version=version, entry_point=entry_point.value
            )

    def add_plugin_module(
        self, module: ModuleType, *, name: str, distribution: str, version: str, entry_point: str
    ) -> None:
        """Register one plugin module after checking the API version it states."""
        problem = api_version_problem(getattr(module, API_ATTRIBUTE, None))
        if problem is not None:
            failure = PluginFailure(name, distribution, version, entry_point, problem, incompatible=True)
            self._fail(failure, IncompatiblePluginError(failure.describe()))
            return
        info = PluginInfo(name, distribution, version, entry_point, module)
        # pluggy rejects hooks that do not match a spec; looking for hook markers reads the module's objects
        with plugin_code() as outcome:
            self.plugin_manager.register(module, name=f"{distribution}:{name}")
            unknown = self._unknown_hooks(module)
        if outcome.error is not None:
            if self.plugin_manager.is_registered(module):
                self.plugin_manager.unregister(module)
            failure = PluginFailure(name, distribution, version, entry_point, describe_error(outcome.error))
            self._fail(failure, outcome.error)
            return
        self.plugins.append(info)
        self._info_by_id[id(module)] = info
        for problem in unknown:
            self._fail(self._failure(info, problem), None)

    @staticmethod
    def _unknown_hooks(module: ModuleType) -> list[str]:
        """A misspelled hook would otherwise be silently ignored by pluggy."""
        known = [name for name in vars(hookspecs) if name.startswith(f"{PROJECT_NAME}_")]
        problems = []
        for attribute, value in vars(module).items():
            if hasattr(value, f"{PROJECT_NAME}_impl") and attribute not in known:
                close = difflib.get_close_matches(attribute, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(f"implements unknown hook {attribute!r}{hint}")
        return problems

    def collect(self) -> None:
        """Call every registration hook, plugin by plugin, and index what they return."""
        for kind, hook_name in REGISTRATION_HOOKS.items():
            for info, answer in self._call_each(hook_name):
                for component in self._checked(info, answer, Component, hook_name):
                    problem = _component_problem(component, kind, hook_name)
                    if problem is not None:
                        self._fail(self._failure(info, problem), None)
                        continue
                    self._add_component(replace(component, distribution=info.distribution, version=info.version))
        for info, answer in self._call_each(COMMANDS_HOOK):
            for command in self._checked(info, answer, CommandSpec, COMMANDS_HOOK):
                taken = next((c for c in self._commands if c.name == command.name), None)
                if taken is not None:  # built-ins register first, so a plugin can never replace a core command
                    self._fail(
                        self._failure(
                            info, f"command {command.name!r} is already provided by {taken.distribution}; skipped"
                        ),
                        None,
                    )
                    continue
                self._commands.append(replace(command, distribution=info.distribution, version=info.version))

    def _call_each(self, hook_name: str) -> Iterator[tuple[PluginInfo, Any]]:
        hook = getattr(self.plugin_manager.hook, hook_name)
        everyone = self.plugin_manager.get_plugins()
        for impl in hook.get_hookimpls():
            info = self._info_by_id[id(impl.plugin)]
            caller = self.plugin_manager.subset_hook_caller(hook_name, [p for p in everyone if p is not impl.plugin])
            with plugin_code() as outcome:
                answers = caller()
            if outcome.error is not None:
                self._fail(self._failure(info, f"{hook_name} raised {describe_error(outcome.error)}"), outcome.error)
                continue
            yield info, answers[0] if answers else []

    def _checked(self, info: PluginInfo, answer: Any, expected: type, hook_name: str) -> list[Any]:
        items = list(answer) if isinstance(answer, list | tuple) else [answer]
        wrong = [item for item in items if not isinstance(item, expected)]
        if wrong:
            problem = f"{hook_name} returned {safe_repr(wrong[0])}, expected {expected.__name__} objects"
            self._fail(self._failure(info, problem), None)
        return [item for item in items if isinstance(item, expected)]

    @staticmethod
    def _failure(info: PluginInfo, error: str) -> PluginFailure:
        return PluginFailure(info.name, info.distribution, info.version, info.entry_point, error)

    def _fail(self, failure: PluginFailure, cause: BaseException | None) -> None:
        if self.strict:
            error_type = IncompatiblePluginError if failure.incompatible else PluginError
            raise error_type(failure.describe()) from cause
        self.failures.append(failure)

    def _add_component(self, component: Component) -> None:
        same_kind = self._components[component.kind]
        if component.distribution != BUILTIN_DISTRIBUTION and any(
            existing.name.lower() == component.name.lower() and existing.distribution == BUILTIN_DISTRIBUTION
            for existing in same_kind
        ):
            self.shadowed.append(component)
        same_kind.append(component)

    def components(self, kind: str | None = None) -> list[Component]:
        """The registered components, of one kind or of all, in kind then name order."""
        kinds = KINDS if kind is None else (self._check_kind(kind),)
        return [c for k in kinds for c in sorted(self._components[k], key=lambda c: (c.name.lower(), c.distribution))]

    def commands(self) -> list[CommandSpec]:
        """The CLI commands registered by plugins (the core's included)."""
        return list(self._commands)

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in KINDS:
            raise UnknownComponentError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        return kind

    def get(self, kind: str, name: str) -> Component:
        """The component of `kind` called `name` (or `distribution:name`).

        Names match exactly first, then case-insensitively. On a clash a built-in wins; two third-party
        components with one name are an error naming both distributions.
        """
        candidates = self._components[self._check_kind(kind)]
        distribution, _, short_name = name.rpartition(":")
        if distribution:
            candidates = [c for c in candidates if _normalize(c.distribution) == _normalize(distribution)]
        matches = [c for c in candidates if short_name == c.name or short_name in c.aliases]
        if not matches:
            wanted = short_name.lower()
            matches = [c for c in candidates if wanted in {c.name.lower(), *(a.lower() for a in c.aliases)}]
        if not matches:
            raise UnknownComponentError(self._unknown_message(kind, name))
        builtins = [c for c in matches if c.distribution == BUILTIN_DISTRIBUTION]
        if builtins and not distribution:
            return builtins[0]
        if len(matches) > 1:
            choices = " or ".join(repr(c.qualified_name) for c in matches)
            owners = " and ".join(f"{c.distribution} {c.version}" for c in matches)
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered by {len(matches)} distributions ({owners}); pick one with {choices}"
            )
        return matches[0]

    def canonical_name(self, component: Component) -> str:
        """The name to record for a registered `component`, so that looking it up again finds it: its own
        name where that picks it, else `distribution:name` (a duplicate, or a plugin a built-in shadows)."""
        try:
            if self.get(component.kind, component.name) is component:
                return component.name
        except DuplicateComponentError:
            pass
        return component.qualified_name

    def _unknown_message(self, kind: str, name: str) -> str:
        available = sorted({c.name for c in self._components[kind]}, key=str.lower)
        message = f"unknown {kind} {name!r}"
        close = difflib.get_close_matches(name.rpartition(":")[2], available, n=1, cutoff=0.5)
        message += f"; did you mean {close[0]!r}?" if close else "."
        message += f" Available: {', '.join(available) if available else 'none'}"
        failed = [f.plugin for f in self.failures]
        if failed:
            message += f" (plugins that failed to load: {', '.join(failed)}; see `cleangpt list-components`)"
        return message


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = Registry.discover()
    return _registry


def reset_registry() -> None:
    """Forget the registry so the next use rediscovers plugins (after installing one, or in tests)."""
    global _registry
    _registry = None


def get_component(kind: str, name: str) -> Component:
    """Shorthand for ``get_registry().get(kind, name)``."""
    return get_registry().get(kind, name)


def load_component(kind: str, name: str) -> Any:
    """Import and return the implementation of a component."""
    return get_component(kind, name).load()
