"""Which kernel each operation uses at each shape class on this host: fixed, recorded, cached or measured.

An operation (`ops`) asks `choose` with its shape class, a tuple such as ``("linear", "float32", "grad", 512,
128, 384)``. The answer comes from the first of:

1. a `fixed` block around the call (``with fixed(linear="onednn"):``, or the older `onednn_linear` and
   `chunked_head` forms), for comparisons and tests;
2. ``$CLEANGPT_KERNELS``: ``plain`` (PyTorch's computation everywhere), ``auto`` or unset (measure), or
   ``op=kernel,...`` (e.g. ``linear=onednn,head_loss=chunks:4194304``; the other operations measure);
3. the choices a resumed run recorded (`use_recorded`), so it computes with the kernels it began with and
   resumes exactly;
4. this host's cache file (`cleangpt_core.kernels.cache`);
5. a measurement, now (`cleangpt_core.kernels.tuner`), stored in the cache and logged once.

Every answer is kept for the process, keyed by shape class, and `choices_made` lists them for the run's
checkpoint. The table starts afresh when the thread count changes (another host key), and after
`forget_choices`, which is also when ``$CLEANGPT_KERNELS`` is read again.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

import torch

from cleangpt_core.errors import ConfigError
from cleangpt_core.kernels.cache import read_cache, store_choice
from cleangpt_core.kernels.host import host_key
from cleangpt_core.kernels.tuner import PLAIN, decide, time_candidates

logger = logging.getLogger(__name__)

KERNELS_ENV = "CLEANGPT_KERNELS"
ShapeClass = tuple[Any, ...]
Candidates = Callable[[], Mapping[str, Callable[[], object]]]

# Each operation and its kernels besides PLAIN (a pattern: the head's chunk size is a number).
KERNELS: dict[str, re.Pattern[str]] = {
    "linear": re.compile(r"onednn"),
    "gelu": re.compile(r"sigmoid"),
    "attention": re.compile(r"matmul"),
    "head_loss": re.compile(r"chunks:[1-9][0-9]*"),
}


def is_kernel(operation: str, kernel: str) -> bool:
    """Whether `kernel` names one of `operation`'s kernels."""
    pattern = KERNELS.get(operation)
    return pattern is not None and (kernel == PLAIN or pattern.fullmatch(kernel) is not None)


def shape_name(shape: ShapeClass) -> str:
    """A shape class as the cache, the logs and a run's record write it: ``linear|float32|grad|512|128|384``."""
    return "|".join(map(str, shape))


_NOTHING_FIXED: Mapping[str, str] = MappingProxyType({})
_fixed_here: ContextVar[Mapping[str, str]] = ContextVar("cleangpt_fixed_kernels", default=_NOTHING_FIXED)


class fixed:  # noqa: N801 - a context manager, named like torch.no_grad
    """Within the block, `operation=kernel` for each keyword, whatever was measured (e.g. ``fixed(linear=
    "plain")`` for PyTorch's MKL, ``fixed(head_loss="chunks:4194304")``). Reusable and re-entrant, like
    `torch.autocast`: one instance may wrap every step of a loop."""

    def __init__(self, **kernels: str) -> None:
        for operation, kernel in kernels.items():
            if not is_kernel(operation, kernel):
                raise ValueError(f"{operation}={kernel!r} names no kernel; see cleangpt_core.kernels.choices.KERNELS")
        self.kernels = kernels
        self._tokens: list[Token[Mapping[str, str]]] = []

    def __enter__(self) -> None:
        self._tokens.append(_fixed_here.set({**_fixed_here.get(), **self.kernels}))

    def __exit__(self, *exc_info: object) -> None:
        _fixed_here.reset(self._tokens.pop())


def parse_fixed(value: str) -> dict[str, str]:
    """``$CLEANGPT_KERNELS`` as operation -> kernel ("*" for every operation); empty: measure everything."""
    value = value.strip()
    if value in ("", "auto"):
        return {}
    if value == PLAIN:
        return {"*": PLAIN}
    fixed_kernels: dict[str, str] = {}
    for item in value.split(","):
        operation, _, kernel = (part.strip() for part in item.partition("="))
        if not is_kernel(operation, kernel):
            raise ConfigError(
                f"${KERNELS_ENV}={value!r}: {item.strip()!r} is not operation=kernel; give 'auto', 'plain', or "
                f"a list such as 'linear=onednn,gelu=sigmoid,attention=matmul,head_loss=chunks:4194304' "
                f"(operations: {', '.join(KERNELS)})"
            )
        fixed_kernels[operation] = kernel
    return fixed_kernels


class _Table:
    """The choices of this process on one host (its thread count), under one ``$CLEANGPT_KERNELS``."""

    def __init__(self, host: str, environment: str) -> None:
        self.host, self.threads = host, torch.get_num_threads()
        self.fixed = parse_fixed(environment)
        self.chosen: dict[ShapeClass, str] = {}
        self._cached: dict[str, Any] | None = None

    def cached(self) -> dict[str, Any]:
        if self._cached is None:
            self._cached = read_cache().get(self.host, {})
        return self._cached

    def resolve(self, shape: ShapeClass, candidates: Candidates) -> str:
        operation, name = shape[0], shape_name(shape)
        kernel = self.fixed.get(operation) or self.fixed.get("*") or _recorded.get(name)
        if kernel is None:
            entry = self.cached().get(name)
            kernel = entry["kernel"] if entry is not None and is_kernel(operation, entry["kernel"]) else None
        if kernel is None:
            kernel = self.measure(name, candidates())
        self.chosen[shape] = _made[name] = kernel
        return kernel

    def measure(self, name: str, candidates: Mapping[str, Callable[[], object]]) -> str:
        global _said_noisy
        decision = decide(time_candidates(candidates))
        if decision.noisy:
            if not _said_noisy:
                logger.warning(
                    "kernel timings are noise on this machine now (repeats differ by %.0f%%): PyTorch's own "
                    "computation is used where nothing was measured before (%s); `cleangpt kernels --time` on a "
                    "quiet machine measures them",
                    100 * decision.spread,
                    name,
                )
                _said_noisy = True
            return decision.kernel
        entry = {"kernel": decision.kernel, "ms": decision.ms}
        store_choice(self.host, name, entry)
        self.cached()[name] = entry
        logger.info("kernel for %s on this host: %s (best of each, ms: %s)", name, decision.kernel, decision.ms)
        return decision.kernel


_table: _Table | None = None
_recorded: dict[str, str] = {}
_made: dict[str, str] = {}
_said_noisy = False


def _current() -> _Table:
    """This process's table; a new one when the thread count changed (another host key). The environment
    (``$CLEANGPT_KERNELS``, the ISA limits, which the libraries read once anyway) is read when a table is made:
    after `forget_choices`, or on first use."""
    global _table
    table = _table
    if table is None or table.threads != torch.get_num_threads():
        table = _table = _Table(host_key(), os.environ.get(KERNELS_ENV, ""))
    return table


def choose(shape: ShapeClass, candidates: Candidates) -> str:
    """The kernel for `shape`; `candidates` gives each applicable kernel's timed call (PLAIN first) if it must
    be measured. A kernel from a `fixed` block or ``$CLEANGPT_KERNELS`` may not apply at this shape: the
    operation then computes PLAIN."""
    here = _fixed_here.get()
    if shape[0] in here:
        return here[shape[0]]
    table = _current()
    kernel = table.chosen.get(shape)
    return kernel if kernel is not None else table.resolve(shape, candidates)


def fixed_kernel(operation: str) -> str | None:
    """The kernel a `fixed` block or ``$CLEANGPT_KERNELS`` fixes for `operation`, or None."""
    here = _fixed_here.get()
    if operation in here:
        return here[operation]
    fixed_kernels = _current().fixed
    return fixed_kernels.get(operation) or fixed_kernels.get("*")


def choices_made() -> dict[str, str]:
    """Every choice this process has made, by shape class name: what a run records in its checkpoints."""
    return dict(sorted(_made.items()))


def use_recorded(choices: Mapping[str, str]) -> None:
    """Compute with the kernels a run recorded (a resumed run), ahead of the cache and of measuring; an entry
    that names no kernel of its operation is skipped with a warning."""
    global _table
    for name, kernel in choices.items():
        operation = str(name).partition("|")[0]
        if isinstance(kernel, str) and is_kernel(operation, kernel):
            _recorded[name] = kernel
        else:
            logger.warning("ignoring the recorded kernel choice %r: %r (not a kernel of %r)", name, kernel, operation)
    _table = None


def forget_choices() -> None:
    """Start afresh: no choice made, none recorded (the next call of each shape class asks the cache again)."""
    global _table, _said_noisy
    _table, _said_noisy = None, False
    _recorded.clear()
    _made.clear()
