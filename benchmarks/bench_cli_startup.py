"""Wall time of ``cleangpt --help`` and ``cleangpt list-components`` against bare ``python -c pass``.

Run: ``python benchmarks/bench_cli_startup.py [--repeats 15]``. The target (issue 2) is under 0.4 s of wall
time on the 2-core development machine, where bare Python start-up is about 0.1 s; the ratio to bare Python
is printed as well because absolute times on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_SECONDS = 0.4


def median_wall_time(command: list[str], repeats: int) -> float:
    """Median wall time of running `command` `repeats` times (after one warm-up run)."""
    subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    cleangpt = shutil.which("cleangpt") or sys.exit("cleangpt is not on PATH: install the project first")
    baseline = median_wall_time([sys.executable, "-c", "pass"], args.repeats)
    print(f"{'command':<34} {'median s':>9} {'x bare python':>14} {'target':>8}")
    print(f"{'python -c pass':<34} {baseline:>9.3f} {1.0:>14.2f}")
    failed = False
    for arguments in (["--help"], ["list-components"]):
        seconds = median_wall_time([cleangpt, *arguments], args.repeats)
        verdict = "ok" if seconds < TARGET_SECONDS else "SLOW"
        failed |= seconds >= TARGET_SECONDS
        print(f"{'cleangpt ' + ' '.join(arguments):<34} {seconds:>9.3f} {seconds / baseline:>14.2f} {verdict:>8}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
