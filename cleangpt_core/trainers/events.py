"""Training events, sent to plugins (through their hooks) and to callback objects, each fault-isolated.

An event ``step_end`` reaches every plugin implementing ``cleangpt_on_step_end`` and every callback object
with an ``on_step_end`` method, called with the keyword arguments of the hookspec (a receiver may name
fewer). A receiver that raises (anything: `SystemExit` and other `BaseException`s too) is reported once with a
warning and left out for the rest of the run, so an observer can never stop or corrupt training; a real
Ctrl-C while it runs still stops training.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cleangpt_core.isolation import describe_error, plugin_code
from cleangpt_core.registry import get_registry

EVENTS = (
    "train_begin",
    "train_end",
    "epoch_begin",
    "epoch_end",
    "step_begin",
    "step_end",
    "evaluation_begin",
    "evaluation_end",
    "checkpoint_saved",
)


def hook_name(event: str) -> str:
    """The hookspec a plugin implements to receive `event`."""
    return f"cleangpt_on_{event}"


@dataclass
class Receiver:
    """One plugin hook implementation or callback method, and the arguments it takes."""

    name: str
    function: Callable[..., Any]
    argnames: tuple[str, ...] | None  # None: takes **kwargs, so it gets every argument
    active: bool = True


class TrainingEvents:
    """The receivers of every event for one run."""

    def __init__(self, callbacks: Iterable[object] = ()) -> None:
        self.failures: list[str] = []
        self._receivers: dict[str, list[Receiver]] = {event: [] for event in EVENTS}
        plugin_manager = get_registry().plugin_manager
        everyone = plugin_manager.get_plugins()
        for event in EVENTS:
            hook = getattr(plugin_manager.hook, hook_name(event))
            for impl in hook.get_hookimpls():
                # a caller that reaches only this plugin: pluggy's tracing still applies, a fault stays local
                others = [plugin for plugin in everyone if plugin is not impl.plugin]
                caller = plugin_manager.subset_hook_caller(hook_name(event), remove_plugins=others)
                self._receivers[event].append(Receiver(f"plugin {impl.plugin_name}", caller, None))
            for callback in callbacks:
                method = getattr(callback, f"on_{event}", None)
                if callable(method):
                    name = f"callback {type(callback).__name__}.on_{event}"
                    self._receivers[event].append(Receiver(name, method, _argnames(method)))

    def emit(self, event: str, **arguments: Any) -> None:
        """Call every active receiver of `event`; one that raises is warned about and switched off."""
        for receiver in self._receivers[event]:
            if not receiver.active:
                continue
            if receiver.argnames is None:
                given = arguments
            else:
                given = {name: value for name, value in arguments.items() if name in receiver.argnames}
            with plugin_code() as outcome:  # SystemExit and the like included; a real Ctrl-C still stops
                receiver.function(**given)
            if outcome.error is not None:
                receiver.active = False
                message = (
                    f"{receiver.name} raised {describe_error(outcome.error)} during the {event!r} training event; "
                    "it receives no further events in this run (training goes on)"
                )
                self.failures.append(message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)


def _argnames(function: Callable[..., Any]) -> tuple[str, ...] | None:
    parameters = inspect.signature(function).parameters.values()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return tuple(parameter.name for parameter in parameters)
