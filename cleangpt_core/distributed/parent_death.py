"""Processes that die with the process that started them (Linux's ``PR_SET_PDEATHSIG``).

A process whose parent is killed with SIGKILL (the out-of-memory killer's way, or a ``kill -9``) is handed to
another parent and runs on: prepare-data's tokenizer workers would wait forever on a queue that nobody feeds,
and torchrun's workers (each in a session of its own, so a kill of the launcher's process group misses them)
would go on training, holding their memory and GPU, or wait forever in a collective. `die_with_parent` asks
the kernel to kill the calling process when its parent dies.

Two things to mind. The signal comes when the *thread* that started the process ends, not the process: both
callers' parents start their workers from their main thread (the executor's ``submit`` in prepare-data,
torchrun's agent loop), which lives as long as the process. And a parent that dies before the request is
missed, so the parent is checked after it: a process whose parent is gone already ends at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when the thread that started it ends


def die_with_parent(parent: int | None = None) -> None:
    """Have Linux kill this process (SIGKILL) when its parent dies; end it now if the parent is gone already.

    parent: the pid the parent had, when the parent passed it (exact); None: the parent this process has at the
    call, which cannot see a parent that died before it. Does nothing on other systems.
    """
    if not sys.platform.startswith("linux"):
        return
    expected = os.getppid() if parent is None else parent
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected:  # the parent died before the request: what the signal would have done
        os.kill(os.getpid(), signal.SIGKILL)
