"""What a comparison tunes per contender: the ``--tune`` ranges, the trial budget, the sampler and the storage.

This module is only the specification (parsed and checked before anything trains, saved in the plan); the
studies that carry it out are `cleangpt_core.experiments.tuning`'s. A range is ``KEY=LOW:HIGH[:log]``: a
``--set`` key and the interval its value is drawn from, on a log scale with ``:log`` (learning rates), as
whole numbers when both ends are written as integers (``model.n_layer=2:6``). The grid sampler tries
``points`` evenly spaced values per key, every combination once (``points ** keys`` trials); TPE draws
``trials`` settings: its first few (`TuningSpec.startup`) are fixed per trial before any is trained (a Latin
hypercube over the ranges, the same for every contender and every worker), the rest each from what the
finished trials measured. ``--tune-extend N`` lets a study step past the end of a range, one step a round, while
its best setting sits on that end (at most N rounds); ``--tune-rungs N`` tunes a ladder at its N smallest rungs.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.plan_limits import MAX_EXTEND, MAX_HEARTBEAT_S, MAX_RUNS, MAX_SEEDS, SPLIT

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

    def step_beyond(self, value: float, direction: int, points: int) -> float | int | None:
        """The setting one step of a `points`-point grid past `value` (`direction` -1: below it, +1: above), or
        None where the range cannot go on. A range does not cross zero: one written from 0 up stays
        non-negative (a weight decay, a dropout), a log range positive; an integer range moves a whole step."""
        if self.log:
            beyond: float = value * (self.high / self.low) ** (direction / (points - 1))
        else:
            beyond = value + direction * (self.high - self.low) / (points - 1)
            if self.low >= 0 > beyond or self.high <= 0 < beyond:
                beyond = 0.0  # as far as the range's sign allows
        if self.integer:
            beyond = round(beyond)
            if beyond == value:
                beyond = value + direction
        if beyond == value or (self.log and beyond <= 0) or self.low >= 0 > beyond or self.high <= 0 < beyond:
            return None
        return beyond


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
    neither changes what is trained, so neither makes another comparison. `extend` is how many rounds a study
    may step past the end of a range where its best setting lies (``--tune-extend``), and `rungs` at how many
    of a ladder's smallest rungs each contender is tuned (None outside a ladder; a plan resolves it).
    """

    keys: tuple[TunedKey, ...]
    trials: int
    sampler: str = "tpe"
    tune_seeds: int = 1
    storage: str | None = field(default=None, compare=False)
    heartbeat_s: float = field(default=DEFAULT_HEARTBEAT_S, compare=False)
    extend: int = 0
    rungs: int | None = None

    @property
    def points(self) -> int:
        """Settings per key: the grid's, and for TPE the spacing of a grid of as many trials (an extension's step)."""
        return max(2, round(self.trials ** (1 / len(self.keys))))

    @property
    def startup(self) -> int:
        """TPE's first trials, whose settings are fixed before any trial is trained (`startup_points`)."""
        return min(self.trials, max(2, self.trials // 3))

    @property
    def max_trials(self) -> int:
        """The most trials a study may train, extensions included: a grid's axes grow by at most one setting a
        round, TPE's extension tries one setting per key a round."""
        if self.sampler == "grid":
            return (self.points + self.extend) ** len(self.keys)
        return self.trials + self.extend * len(self.keys)

    def grid(self) -> list[dict[str, float | int]]:
        """Every setting the grid sampler tries, in order (the first key varies slowest)."""
        axes = [[(key.key, value) for value in key.points(self.points)] for key in self.keys]
        return [dict(combination) for combination in itertools.product(*axes)]

    def startup_points(self, seed: int) -> list[dict[str, float | int]]:
        """TPE's first `startup` settings: a Latin hypercube over the ranges (each key's range cut into as many
        equal strata as there are settings, one setting drawn in each; on the log scale for a ``:log`` key).

        They depend on `seed` and the spec only, so every worker and every contender draws the same ones: a
        worker asking for a trial while another trains never draws what that one is training (TPE's random
        start-up is not covered by its constant liar), and contenders start from the same settings.
        """
        rng = random.Random(seed)
        count = self.startup
        strata = {key.key: rng.sample(range(count), count) for key in self.keys}
        settings = []
        for index in range(count):
            setting: dict[str, float | int] = {}
            for key in self.keys:
                u = (strata[key.key][index] + rng.random()) / count
                if key.log:
                    value = math.exp(math.log(key.low) + u * math.log(key.high / key.low))
                else:
                    value = key.low + u * (key.high - key.low)
                setting[key.key] = round(value) if key.integer else value
            settings.append(setting)
        return settings

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
            "extend": self.extend,
            "rungs": self.rungs,
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
            data.get("extend", 0),
            data.get("rungs"),
        )


def tuning_spec(
    tune: Sequence[str],
    trials: int | None = None,
    sampler: str | None = None,
    tune_seeds: int | None = None,
    storage: str | None = None,
    heartbeat_s: float | None = None,
    extend: int | None = None,
    rungs: int | None = None,
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
                ("--tune-extend", extend),
                ("--tune-rungs", rungs),
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
    if heartbeat_s is not None and not (math.isfinite(heartbeat_s) and 1 <= heartbeat_s <= MAX_HEARTBEAT_S):
        raise ConfigError(
            f"--heartbeat must be at least 1 second and at most {MAX_HEARTBEAT_S:,} (a day), got {heartbeat_s:g}"
        )
    if extend is not None and not 0 <= extend <= MAX_EXTEND:
        raise ConfigError(f"--tune-extend must be between 0 and {MAX_EXTEND} (rounds past a range's end), got {extend}")
    if rungs is not None and rungs < 1:
        raise ConfigError(f"--tune-rungs must be at least 1 (the smallest rungs tuned), got {rungs}")
    if storage is not None and "://" not in storage:
        raise ConfigError(
            f"--storage {storage!r} must be an Optuna storage URL (sqlite:///path/study.db, "
            "postgresql://user:password@host/database, mysql+pymysql://...)"
        )
    spec = TuningSpec(
        keys,
        trials,
        sampler,
        tune_seeds or 1,
        storage,
        heartbeat_s if heartbeat_s is not None else DEFAULT_HEARTBEAT_S,
        extend or 0,
        rungs,
    )
    if sampler == "grid":
        spec.grid()  # integer ranges too narrow for their points fail here
    if spec.max_trials > MAX_RUNS:
        raise ConfigError(
            f"--trials {trials:,} with --tune-extend {spec.extend} may train {spec.max_trials:,} trials per contender, "
            f"more than {MAX_RUNS:,}; {SPLIT}"
        )
    return spec
