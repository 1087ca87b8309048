"""What a second worker buys a tuned comparison on this machine: the same study's wall time, one worker vs two.

Each round trains the same study (one contender, a grid of learning rates, then the final runs) into a fresh
folder, once with one `cleangpt compare` process and once with that process plus `cleangpt compare --resume
DIR --worker`, the machine's cores shared out between the processes (OMP_NUM_THREADS); the rounds alternate
(one, two, one, two, ...) so that load which comes and goes on a shared machine falls on both. Prints each
round's wall time with the 1-minute load average before and after, the median of each, and their ratio.
Run it under the benchmark lock:

    flock /tmp/cleangpt-bench.lock nice python benchmarks/bench_tuning_workers.py --rounds 2 --max-steps 40
    (add --set model.n_layer=2 --set model.n_embd=64 ... for a smaller model on a busy machine)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(out: Path, max_steps: int, trials: int, overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cleangpt_core",
        "compare",
        "--model",
        "Vanilla",
        "--seeds",
        "2",
        "--max-steps",
        str(max_steps),
        "--tune",
        "optimizer.lr=3e-4:3e-2:log",
        "--trials",
        str(trials),
        "--tune-sampler",
        "grid",
        "--set",
        "trainer.progress_bar=false",
        "--set",
        "output.sample_tokens=0",
        "--set",
        "trainer.eval_interval=1000000",
        "--set",
        "device=cpu",
        "--set",  # a small validation split: each run's final evaluation reads every validation token
        "data.val_fraction=0.02",
        "--out",
        str(out),
        *(part for override in overrides for part in ("--set", override)),
    ]


def study(
    workers: int, folder: Path, max_steps: int, trials: int, overrides: list[str], threads: int | None = None
) -> float:
    """Wall seconds of the whole study (tuning, final runs, report) with this many processes."""
    out = folder / f"workers-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    # the cores shared out: one worker runs os.cpu_count() threads, two run half each. More threads than cores
    # stalls PyTorch's OpenMP workers at every barrier (measured here: a recipe fell from 9,700 to 360 tokens/s)
    # (--threads fixes it for both, to separate what the second process buys from what fewer threads buy)
    threads = str(threads or max(1, (os.cpu_count() or 1) // workers))
    quiet = {
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.STDOUT,
        "env": {**os.environ, "OMP_NUM_THREADS": threads},
    }
    start = time.perf_counter()
    first = subprocess.Popen(command(out, max_steps, trials, overrides), **quiet)
    others = []
    if workers > 1:
        while not (out / "study.db").is_file() and first.poll() is None:
            time.sleep(0.05)
        resume = [sys.executable, "-m", "cleangpt_core", "compare", "--resume", str(out), "--worker"]
        others = [subprocess.Popen(resume, **quiet) for _ in range(workers - 1)]
    codes = [process.wait() for process in [first, *others]]
    elapsed = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a process failed ({codes}) in {out}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="threads per process (default: cores / workers)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for every run")
    options = parser.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(1, options.rounds + 1):
            for workers in (1, 2):
                before = os.getloadavg()[0]
                seconds = study(
                    workers, Path(folder), options.max_steps, options.trials, options.overrides, options.threads
                )
                times[workers].append(seconds)
                print(
                    f"round {round_number}, {workers} worker(s): {seconds:.1f} s "
                    f"(load average {before:.2f} -> {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"median: one worker {one:.1f} s, two workers {two:.1f} s; one / two = {one / two:.2f}")


if __name__ == "__main__":
    main()
