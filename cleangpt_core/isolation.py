"""Running plugin code so that its faults stay its own.

A plugin can fail in ways `except Exception` does not see: `sys.exit()` at import raises `SystemExit`, a
generator-based hook can leak `GeneratorExit`, and code may raise `KeyboardInterrupt` or its own
`BaseException` subclass. `plugin_code()` catches all of them, so the caller can report the plugin and
drop it. The one exception that is not the plugin's fault is a real Ctrl-C: a `KeyboardInterrupt` raised
while a SIGINT arrived during the plugin's code is re-raised, so the user can still stop the program; so is
one a stop signal's handler raised (a `KeyboardInterrupt` carrying the signal's number as ``signum``, as
`cleangpt_core.trainers.interrupts` raises for SIGTERM too).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType


@dataclass
class Outcome:
    """How a piece of plugin code ended: `error` is what it raised, or None."""

    error: BaseException | None = None


@dataclass
class _SigintRecord:
    received: bool = False


@contextmanager
def _recording_sigint() -> Iterator[_SigintRecord]:
    """Note whether SIGINT arrives in the body, and handle it as the handler in place before would."""
    record = _SigintRecord()
    previous = signal.getsignal(signal.SIGINT)
    # Signals are handled in the main thread only, so elsewhere nothing can be a real Ctrl-C; a handler set
    # outside Python (None) could not be put back, so it is left alone.
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield record
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        record.received = True
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:  # the process would have died of the signal: let it
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, handler)
    try:
        yield record
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def plugin_code() -> Iterator[Outcome]:
    """Run the body as plugin code: whatever it raises is caught into the outcome, except a real Ctrl-C.

    ``with plugin_code() as outcome: module = entry_point.load()``, then report `outcome.error` if set.
    """
    outcome = Outcome()
    with _recording_sigint() as sigint:
        try:
            yield outcome
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt) and (sigint.received or hasattr(error, "signum")):
                raise
            outcome.error = error


def safe_repr(value: object) -> str:
    """`repr(value)`, or a stand-in naming its type when the object's own `__repr__` fails."""
    with plugin_code() as outcome:
        text = repr(value)
    if outcome.error is not None:
        return f"<{type(value).__name__} object whose __repr__ raised {type(outcome.error).__name__}>"
    return text


def describe_error(error: BaseException) -> str:
    """`TypeName: message` on one line, even for an exception whose `__str__` fails."""
    with plugin_code() as outcome:
        message = " ".join(str(error).split())
    if outcome.error is not None:
        message = f"(its message could not be shown: __str__ raised {type(outcome.error).__name__})"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
