"""Tokens per second and seconds per step, timed where the device has finished the steps being timed.

A GPU runs a step long after the host queued it: a clock read at the end of a step's Python code times the
queueing, not the step. So the steps are timed in spans that begin and end with the device synchronised: a
span starts after a reading step's work (logging, evaluation, checkpoint: steps that wait for the device
anyway) and ends at the next logging step, after its weight update. Quiet steps read no clock and wait for
nothing; a receiver that asks for their figures on such a step waits for the device then (as for its loss).
"""

from __future__ import annotations

import time

import torch

from cleangpt_core.distributed.devices import synchronize


class Throughput:
    """Counts the tokens and steps since its span began, and times them against a synchronised device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.restart()

    def restart(self) -> None:
        """Begin a new span now, once the device has finished what is queued."""
        synchronize(self.device)
        self._started = time.perf_counter()
        self._tokens = 0
        self._steps = 0

    def add(self, tokens: int) -> None:
        """Count one optimizer step of `tokens` tokens (all processes together)."""
        self._tokens += tokens
        self._steps += 1

    def measure(self) -> dict[str, float]:
        """``tokens_per_s`` and ``step_time_s`` over the span so far (waits for the device)."""
        synchronize(self.device)
        seconds = time.perf_counter() - self._started
        return {
            "tokens_per_s": self._tokens / seconds if seconds > 0 else float("inf"),
            "step_time_s": seconds / self._steps if self._steps else 0.0,
        }
