"""The capture API costs nothing when unused: training steps of a model that has been inspected (hooks since
removed) against its untouched twin, with `cleangpt_core.inspection` imported, interleaved in one run.

A capture registers forward hooks only inside its ``with`` block; this checks that nothing is left behind
that slows a later training step (PyTorch takes a slower call path while any hook is registered).

    flock /tmp/cleangpt-bench.lock python benchmarks/bench_inspection_overhead.py
"""

from __future__ import annotations

import copy
import time

import torch
from measure import interleaved_medians, training_step

import cleangpt_core.inspection as inspection
from cleangpt_core.model import get_model

SHAPE = {"vocab_size": 65, "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}  # bench_train_step's
BATCH = 12
ROUNDS = 40


def main() -> None:
    # One thread and this process's CPU seconds: steadier than wall time on a shared machine.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    untouched = get_model("Vanilla", **SHAPE)
    twin = copy.deepcopy(untouched)  # a second untouched model: the noise floor of the comparison
    inspected = copy.deepcopy(untouched)
    tokens = torch.randint(0, SHAPE["vocab_size"], (BATCH, SHAPE["block_size"]))
    with inspection.capture(inspected, attention=True, patch={"h.0.mlp": lambda output: output}):
        inspected(tokens)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in inspected.modules())
    contenders = {
        "untouched": training_step(untouched, tokens),
        "untouched twin": training_step(twin, tokens),
        "inspected, inactive": training_step(inspected, tokens),
    }
    medians = interleaved_medians(contenders, ROUNDS, warmup=3, clock=time.process_time)
    tokens_per_step = BATCH * SHAPE["block_size"]
    print(f"train step, Vanilla 4 x 128, batch {BATCH} x {SHAPE['block_size']}, 1 thread, CPU time, {ROUNDS} rounds")
    for name, median in medians.items():
        print(f"  {name:<20} {median * 1e3:8.2f} ms/step {tokens_per_step / median:10.0f} tokens/s")
    print(f"  ratio inspected / untouched: {medians['inspected, inactive'] / medians['untouched']:.3f}")
    print(f"  ratio twin / untouched (noise): {medians['untouched twin'] / medians['untouched']:.3f}")
    with open("/proc/loadavg") as load:
        print(f"  load average: {load.read().strip()}")


if __name__ == "__main__":
    main()
