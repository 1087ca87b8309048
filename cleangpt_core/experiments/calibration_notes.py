"""What the reports quote of the calibration harness: its headline figures, measured by
`benchmarks/bench_calibration.py` over the harness's design grid (`cleangpt_core.experiments.calibration`) and
shipped beside this module as ``calibration.json``, in the words the reports use."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cleangpt_core.experiments.verdicts import PAIRED, WELCH

CALIBRATION_JSON = Path(__file__).with_name("calibration.json")
RESULTS = "benchmarks/results/calibration.md"


def headline() -> dict[str, Any] | None:
    """The calibration's headline figures (`calibration.json`, written by the benchmark); None before it ran."""
    if not CALIBRATION_JSON.is_file():
        return None
    return json.loads(CALIBRATION_JSON.read_text(encoding="utf-8"))["headline"]


def coverage_note(statistic: str) -> str:
    """The calibration harness's figure for `statistic` (``multiplier``, ``gap``, ``gap_family``, ``paired``,
    ``welch``, ``family`` or ``pairs``), in the words the reports use."""
    found = (headline() or {}).get(statistic)
    if found is None:
        return "not yet measured by the calibration harness"
    return (
        f"{found['what']}: {points(found['rate'], found['se'])} % in the calibration harness ({found['where']}; "
        f"{RESULTS})"
    )


def points(share: float, se: float) -> str:
    """``95.6 ± 0.1`` (percent, the standard error to two decimals below 0.1 point)."""
    return f"{100 * share:.1f} ± {100 * se:.1f}" if 100 * se >= 0.1 else f"{100 * share:.1f} ± {100 * se:.2f}"


def interval_notes(methods: Sequence[str]) -> str:
    """`coverage_note` for each interval method among `methods` (`verdicts.PAIRED`, `verdicts.WELCH`), named."""
    named = {PAIRED: ("paired", "paired"), WELCH: ("welch", "Welch's")}
    used = [named[method] for method in (PAIRED, WELCH) if method in set(methods)]
    return "; ".join(f"{words} {coverage_note(key)}" for key, words in used)
