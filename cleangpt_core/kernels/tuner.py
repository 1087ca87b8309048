"""Timing kernel candidates against each other, and the rule that picks one from the timings.

Like ``torch.backends.cudnn.benchmark``: each candidate runs once to warm up, then in `ROUNDS` interleaved
rounds of about `ROUND_SECONDS` each, so a slow moment of the machine falls on every candidate alike. The
fastest by its best round wins, but only by a clear margin over PyTorch's own computation ("plain", always a
candidate): a tie keeps PyTorch's. Where the rounds of one candidate disagree by more than `NOISE_LIMIT`, the
machine is too busy for a close call to mean anything, and PyTorch's computation is kept, unless a candidate
beats it by more than the noise itself: in the README's main job on a quiet 2-core AMD EPYC, the rounds of
bf16 attention disagreed by 37 % while matmul attention took a
ninth of SDPA's time, a gap no noise of that size could make.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

PLAIN = "plain"  # PyTorch's own computation: every operation's first candidate
ROUNDS = 5
SLOW_ROUNDS = 3  # for calls slower than SLOW_CALL_SECONDS (a GPT-2-sized head): time is bounded, noise is smaller
SLOW_CALL_SECONDS = 0.02
ROUND_SECONDS = 4e-3  # a round long enough that one scheduler tick is not its spread
MAX_CALLS_PER_ROUND = 64
# A candidate must beat plain by this fraction to be chosen: a smaller gain is within what repeats vary by.
MARGIN = 0.03
# Relative spread of a candidate's rounds (second slowest against fastest: one outlier is forgiven) above which
# the timings are noise.
NOISE_LIMIT = 0.25


@dataclass(frozen=True)
class Decision:
    """The chosen candidate, each candidate's best round in milliseconds, and whether the timings were noise."""

    kernel: str
    ms: dict[str, float]
    noisy: bool
    spread: float


def decide(rounds: Mapping[str, list[float]]) -> Decision:
    """The candidate to use, from each candidate's seconds per call in each round (`PLAIN` must be one)."""
    best = {name: min(times) for name, times in rounds.items()}
    spread = max((sorted(times)[-2] - min(times)) / min(times) for times in rounds.values())
    ms = {name: round(seconds * 1e3, 4) for name, seconds in best.items()}
    fastest = min(best, key=best.__getitem__)
    if spread > NOISE_LIMIT:  # only a win larger than the noise itself stands
        clear = fastest != PLAIN and best[fastest] * (1 + spread) < best[PLAIN] * (1 - MARGIN)
        return Decision(fastest if clear else PLAIN, ms, noisy=not clear, spread=spread)
    kernel = fastest if best[fastest] < best[PLAIN] * (1 - MARGIN) else PLAIN
    return Decision(kernel, ms, noisy=False, spread=spread)


def time_candidates(candidates: Mapping[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Seconds per call of each candidate in each of `ROUNDS` interleaved rounds."""
    calls: dict[str, int] = {}
    slowest = 0.0
    for name, run in candidates.items():
        start = time.perf_counter()
        run()  # warm-up: first-call allocations and one-off setup
        once = max(time.perf_counter() - start, 1e-7)
        calls[name] = max(1, min(MAX_CALLS_PER_ROUND, math.ceil(ROUND_SECONDS / once)))
        slowest = max(slowest, once)
    rounds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(SLOW_ROUNDS if slowest > SLOW_CALL_SECONDS else ROUNDS):
        for name, run in candidates.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                run()
            rounds[name].append((time.perf_counter() - start) / calls[name])
    return rounds
