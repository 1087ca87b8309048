"""Stop signals that keep the work: Ctrl-C, a scheduler's SIGTERM, SLURM's ``--signal`` warning.

A run asked to stop finishes the optimizer step it is in, writes a checkpoint and then stops, so nothing it
trained is lost; a second signal stops it at once (the last checkpoint written is still whole, since every
write is atomic). The signals: SIGINT (Ctrl-C, ``kill -INT``), SIGTERM (what ``kill``, Kubernetes, torchrun's
agent and SLURM send before they kill a job) and SIGUSR1 (the usual choice for SLURM's early warning,
``sbatch --signal=B:USR1@120``).

Two contexts share one handler for them:

- `stop_on_signals` (a command's whole run: ``cleangpt train``, ``compare``, ``ablate``, a worker): a stop
  signal raises `StopRequested` where the program is, which is safe outside a training loop, since there is
  nothing unsaved there (the last checkpoint is on disk);
- `deferred_stop` (a trainer's loop, which installs the handler itself when no command did): a stop signal is
  recorded for the loop, which stops after its current step; a second one raises at once.

A SIGINT the shell set to be ignored (a background job of a non-interactive shell, ``cmd &``) is handled all
the same while either context runs: an explicit ``kill -INT`` is meant. `StopRequested` is a
`KeyboardInterrupt`, so code that lets Ctrl-C through treats every stop signal alike.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

# SIGUSR1 does not exist on Windows
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name)
)


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived; where a trainer stopped for it, `step` and `checkpoint` say where it stands."""

    def __init__(self, signum: int, step: int | None = None, checkpoint: Path | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.step = step
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        return f"{self.signal_name}: {self.where()}"

    def where(self) -> str:
        """Where the work stands: ``stopped at step 420, checkpoint runs/x/checkpoints/step-00000420``."""
        at = f" at step {self.step:,}" if self.step is not None else ""
        saved = f", checkpoint {self.checkpoint}" if self.checkpoint is not None else ""
        return f"stopped{at}{saved}"

    @property
    def signal_name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130 for Ctrl-C)."""
        return 128 + self.signum


@dataclass
class StopRequest:
    """What a deferring loop polls: the number of the stop signal that arrived, or None."""

    signum: int | None = None


@dataclass
class _Handling:
    """The handler's state while a context is installed."""

    previous: dict[int, Any]
    deferred: StopRequest | None = None  # set while a training loop defers stop signals


_handling: _Handling | None = None


def _handler(signum: int, frame: FrameType | None) -> None:
    deferred = _handling.deferred if _handling is not None else None
    if deferred is not None and deferred.signum is None:
        deferred.signum = signum
        # os.write, not print: a handler may interrupt a write to sys.stderr, whose buffer is not reentrant
        os.write(
            2,
            f"\n{signal.Signals(signum).name}: stopping after this step, once a checkpoint is written "
            "(send it again to stop at once)\n".encode(),
        )
        return
    raise StopRequested(signum)


def _install() -> bool:
    """Install the handler for every stop signal, unless it is in place or this is not the main thread (only
    the main thread may set handlers; signals are delivered there alone). True when this call installed it."""
    global _handling
    if _handling is not None or threading.current_thread() is not threading.main_thread():
        return False
    previous = {int(signum): signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handler)
    _handling = _Handling(previous)
    return True


def _uninstall() -> None:
    global _handling
    assert _handling is not None
    for signum, previous in _handling.previous.items():
        # None: a handler installed from outside Python, which cannot be put back; the default is the nearest
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    _handling = None


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the body runs, a stop signal raises `StopRequested` (a training loop inside defers it to its next
    step boundary). The handlers in place before are put back after."""
    installed = _install()
    try:
        yield
    finally:
        if installed:
            _uninstall()


@contextmanager
def deferred_stop() -> Iterator[StopRequest]:
    """While the body runs, the first stop signal is recorded in the yielded request, for the loop to stop at
    its next safe point; a second one raises `StopRequested` at once.

    Outside the main thread no handler can be installed: the request then never fills, and signals act as the
    process's handlers say.
    """
    installed = _install()
    request = StopRequest()
    outer = _handling.deferred if _handling is not None else None
    if _handling is not None:
        _handling.deferred = request
    try:
        yield request
    finally:
        if _handling is not None:
            _handling.deferred = outer
        if installed:
            _uninstall()
