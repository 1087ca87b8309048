"""What a comparison tunes per contender: the ``--tune`` ranges, the trial budget, the sampler and the storage.

This module is only the specification (parsed and checked before anything trains, saved in the plan); the
studies that carry it out are `cleangpt_core.experiments.tuning`'s. A range is ``KEY=LOW:HIGH[:log]``: a
``--set`` key and the interval its value is drawn from, on a log scale with ``:log`` (learning rates), as
whole numbers when both ends are written as integers (``model.n_layer=2:6``). The grid sampler tries
``points`` evenly spaced values per key, every combination once (``points ** keys`` trials); TPE draws
``trials`` settings, each from what the finished trials measured.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.plan_limits import MAX_RUNS, MAX_SEEDS, SPLIT

SAMPLERS = ("grid", "tpe")
STUDY_FILE = "study.db"  # the default Optuna storage, inside the comparison folder (SQLite: see tuning.py)
DEFAULT_HEARTBEAT_S = 10.0
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class TunedKey:
    """One ``--tune`` range."""

    key: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    @property
    def text(self) -> str:
        """The range as ``--tune`` takes it."""
        return f"{self.key}={self.low:g}:{self.high:g}{':log' if self.log else ''}"

    def points(self, count: int) -> list[float | int]:
        """`count` evenly spaced values from `low` to `high` (both included; geometric spacing with `log`)."""
        if self.log:
            ratio = math.log(self.high / self.low)
            values = [self.low * math.exp(ratio * i / (count - 1)) for i in range(count)]
        else:
            values = [self.low + (self.high - self.low) * i / (count - 1) for i in range(count)]
        values[-1] = self.high  # no rounding error at the end the user wrote
        if not self.integer:
            return values
        whole = list(dict.fromkeys(round(value) for value in values))
        if len(whole) < count:
            raise ConfigError(
                f"--tune {self.text}: {count} grid points would repeat whole numbers; widen the range or give fewer "
                "--trials"
            )
        return whole


def parse_tune(text: str) -> TunedKey:
    """``KEY=LOW:HIGH[:log]`` as a `TunedKey`, one line naming the option when it is malformed."""
    key, separator, bounds = text.partition("=")
    parts = bounds.split(":")
    log = len(parts) == 3 and parts[2].strip() == "log"
    if not separator or not key.strip() or len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise ConfigError(
            f"--tune {text!r} must look like KEY=LOW:HIGH or KEY=LOW:HIGH:log (e.g. optimizer.lr=3e-4:3e-2:log)"
        )
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"--tune {text!r}: LOW and HIGH must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"--tune {text!r}: LOW must be below HIGH, both finite")
    if log and low <= 0:
        raise ConfigError(f"--tune {text!r}: a log range must be positive (LOW > 0)")
    integer = bool(_INTEGER.fullmatch(parts[0].strip()) and _INTEGER.fullmatch(parts[1].strip()))
    return TunedKey(key.strip(), low, high, log, integer)


@dataclass(frozen=True)
class TuningSpec:
    """Per-contender tuning: every contender gets its own study over the same ranges and trial budget.

    Each trial trains `tune_seeds` runs (seeds after the comparison's own, so the final runs' seeds are fresh)
    and scores the mean of their final validation losses. `storage` is an Optuna storage URL (None: the
    SQLite file `STUDY_FILE` in the comparison folder) and `heartbeat_s` how often a worker says it is alive;
    neither changes what is trained, so neither makes another comparison.
    """

    keys: tuple[TunedKey, ...]
    trials: int
    sampler: str = "tpe"
    tune_seeds: int = 1
    storage: str | None = field(default=None, compare=False)
    heartbeat_s: float = field(default=DEFAULT_HEARTBEAT_S, compare=False)

    def grid(self) -> list[dict[str, float | int]]:
        """Every setting the grid sampler tries, in order (the first key varies slowest)."""
        points = round(self.trials ** (1 / len(self.keys)))
        axes = [[(key.key, value) for value in key.points(points)] for key in self.keys]
        return [dict(combination) for combination in itertools.product(*axes)]

    def storage_url(self, out_dir: Path) -> str:
        """The Optuna storage: the one given, or the SQLite file in the comparison folder."""
        return self.storage or f"sqlite:///{(out_dir / STUDY_FILE).resolve()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": [vars(key) for key in self.keys],
            "trials": self.trials,
            "sampler": self.sampler,
            "tune_seeds": self.tune_seeds,
            "storage": self.storage,
            "heartbeat_s": self.heartbeat_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TuningSpec:
        return cls(
            tuple(TunedKey(**key) for key in data["keys"]),
            data["trials"],
            data["sampler"],
            data["tune_seeds"],
            data.get("storage"),
            data.get("heartbeat_s", DEFAULT_HEARTBEAT_S),
        )


def tuning_spec(
    tune: Sequence[str],
    trials: int | None = None,
    sampler: str | None = None,
    tune_seeds: int | None = None,
    storage: str | None = None,
    heartbeat_s: float | None = None,
) -> TuningSpec | None:
    """The tuning the options ask for (None without ``--tune``), every bad value one line."""
    if not tune:
        given = [
            option
            for option, value in (
                ("--trials", trials),
                ("--tune-sampler", sampler),
                ("--tune-seeds", tune_seeds),
                ("--storage", storage),
                ("--heartbeat", heartbeat_s),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --tune KEY=LOW:HIGH[:log]")
        return None
    keys = tuple(parse_tune(text) for text in tune)
    repeated = sorted({key.key for key in keys if [k.key for k in keys].count(key.key) > 1})
    if repeated:
        raise ConfigError(f"--tune names {repeated[0]!r} twice; give each key one range")
    sampler = sampler or "tpe"
    if sampler not in SAMPLERS:
        raise ConfigError(f"--tune-sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if trials is None:
        raise ConfigError("--tune needs --trials N (trials per contender)")
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if trials > MAX_RUNS:  # before a grid of them is built
        raise ConfigError(f"--trials must be at most {MAX_RUNS:,} (trials per contender), got {trials:,}; {SPLIT}")
    if sampler == "grid":
        points = round(trials ** (1 / len(keys)))
        if points < 2 or points ** len(keys) != trials:
            raise ConfigError(
                f"--tune-sampler grid over {len(keys)} key(s) tries the same number of points on each: --trials "
                f"must be {' or '.join(str(n ** len(keys)) for n in (2, 3, 4))}..., got {trials}"
            )
    if tune_seeds is not None and not 1 <= tune_seeds <= MAX_SEEDS:
        raise ConfigError(f"--tune-seeds must be between 1 and {MAX_SEEDS:,} (runs per trial), got {tune_seeds:,}")
    if heartbeat_s is not None and not (math.isfinite(heartbeat_s) and heartbeat_s >= 1):
        raise ConfigError(f"--heartbeat must be at least 1 second, got {heartbeat_s}")
    if storage is not None and "://" not in storage:
        raise ConfigError(
            f"--storage {storage!r} must be an Optuna storage URL (sqlite:///path/study.db, "
            "postgresql://user:password@host/database, mysql+pymysql://...)"
        )
    spec = TuningSpec(
        keys, trials, sampler, tune_seeds or 1, storage, heartbeat_s if heartbeat_s is not None else DEFAULT_HEARTBEAT_S
    )
    if sampler == "grid":
        spec.grid()  # integer ranges too narrow for their points fail here
    return spec
