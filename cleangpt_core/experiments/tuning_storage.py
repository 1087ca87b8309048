"""Where a tuned comparison's Optuna studies live, and the heartbeat that tells them a worker is alive.

The default storage is SQLite in the comparison folder: Optuna's heartbeats (what finds a killed worker's
trial) need a relational storage, which its journal file has not, and SQLite serves every process of one
machine. For several machines give ``--storage`` a PostgreSQL or MySQL URL (SQLite's locks are not safe on a
network file system).
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.tuning_spec import TuningSpec

if TYPE_CHECKING:
    import optuna

OPEN_ATTEMPTS = 3  # tries at opening the storage: two workers starting together may both create its tables


def open_storage(spec: TuningSpec, out_dir: Path) -> optuna.storages.RDBStorage:
    """The comparison's Optuna storage, with heartbeats and the retry of a killed worker's trial."""
    url = spec.storage_url(out_dir)
    for _ in range(OPEN_ATTEMPTS - 1):
        try:
            return _rdb_storage(url, max(1, round(spec.heartbeat_s)))
        except Exception:
            time.sleep(1.0)  # another worker may be creating the tables this very moment
    try:
        return _rdb_storage(url, max(1, round(spec.heartbeat_s)))
    except Exception as error:  # a bad URL, a missing driver, a database that refuses: one line
        raise ConfigError(f"--storage {url!r} cannot be opened: {' '.join(str(error).split())}") from None


def _rdb_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    import optuna

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # wait out another's write
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=heartbeat,
            grace_period=3 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
        )


class Heartbeat:
    """Tells the storage, every interval, that the worker training this trial is alive."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float) -> None:
        self._stop = threading.Event()
        storage.record_heartbeat(trial_id)
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, interval), daemon=True)
        self._thread.start()

    def _beat(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float) -> None:
        while not self._stop.wait(interval):
            storage.record_heartbeat(trial_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
