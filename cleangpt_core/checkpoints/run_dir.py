"""The on-disk layout of a training run, owned here so that no other module spells a path of it.

::

    <run>/
      checkpoints/step-00000500/     one complete checkpoint per saved step
        config.json                  the model's config  (model directory: what `load_model` reads)
        model.safetensors            its weights (a sharded checkpoint gets it from its shards on first load)
        trainer_state.json           counters, schedule and the structure of the optimizer state
        trainer_state.safetensors    the optimizer's tensors (not in a sharded checkpoint: they are in shards/)
        rng/rank-00000.json          each process's random generators, one file per rank
        shards/                      a sharded (FSDP) run's weights and optimizer state, one safetensors file
                                     per process (`cleangpt_core.checkpoints.sharded`)
        tokenizer/                   the tokenizer, so the checkpoint is self-contained
        experiment.json              the experiment config the run trains with
      latest                         "checkpoints/step-00000500": the newest complete checkpoint
      best                           {"checkpoint": ..., "step": ..., "val_loss": ...}: the lowest validation loss
      metrics.jsonl, loss_curve.png  the history of the run
      data.json                      the fingerprint of the prepared data (or python-stdlib) the run trains on,
                                     checked on resume
      sample.txt                     text generated from the final checkpoint
      averaged/                      a model directory: the mean of the last checkpoints, when asked for
      .lock, .lock.owner             held by the process training into the run, and who that is

``latest`` and ``best`` are pointers and name a checkpoint of *this* run only: a pointer that leads anywhere
else (``../other/checkpoints/...``, an absolute path, a symlink out) is refused, so a damaged or planted
pointer can never make a run write into or prune another. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cleangpt_core.checkpoints.atomic_write import remove_partials, write_text_atomic
from cleangpt_core.errors import CheckpointError, ConfigError, RunLockedError

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
BEST_FILE = "best"
METRICS_FILE = "metrics.jsonl"
LOSS_CURVE_FILE = "loss_curve.png"
SAMPLE_FILE = "sample.txt"
AVERAGED_DIR = "averaged"
DATA_FILE = "data.json"
TRACKERS_FILE = "trackers.json"  # the tracker runs a resumed run continues (cleangpt_core.experiments.trackers)
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"  # W&B's own name for the folder it makes under the directory it is given
LOCK_FILE = ".lock"
LOCK_OWNER_FILE = ".lock.owner"
OWNER_WAIT_S = 2.0  # how long a refused process waits for a holder that has just taken the lock to name itself

# Inside a checkpoint directory
MODEL_CONFIG_FILE = "config.json"
MODEL_WEIGHTS_FILE = "model.safetensors"
STATE_JSON_FILE = "trainer_state.json"
STATE_TENSORS_FILE = "trainer_state.safetensors"
TOKENIZER_DIR = "tokenizer"
EXPERIMENT_FILE = "experiment.json"
SHARDS_DIR = "shards"
RNG_DIR = "rng"

_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_HELD: set[Path] = set()  # folders whose lock this process holds


def checkpoint_name(step: int) -> str:
    """The directory name of the checkpoint of `step`."""
    return f"step-{step:08d}"


def rng_file(rank: int) -> str:
    """The name, inside a checkpoint's ``rng/`` folder, of the random generators' state of process `rank`."""
    return f"rank-{rank:05d}.json"


def step_of(checkpoint: Path) -> int:
    """The optimizer step a checkpoint directory was written at."""
    match = _STEP_DIR.match(Path(checkpoint).name)
    if match is None:
        raise CheckpointError(f"{checkpoint} is not named like a checkpoint (step-XXXXXXXX)")
    return int(match.group(1))


class RunDirectory:
    """One run directory: where each of its files lives, its pointers, its clean-up and its lock."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.root)!r})"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def loss_curve(self) -> Path:
        return self.root / LOSS_CURVE_FILE

    @property
    def sample(self) -> Path:
        return self.root / SAMPLE_FILE

    @property
    def averaged(self) -> Path:
        return self.root / AVERAGED_DIR

    @property
    def data_record(self) -> Path:
        return self.root / DATA_FILE

    @property
    def trackers_state(self) -> Path:
        return self.root / TRACKERS_FILE

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / TENSORBOARD_DIR

    def checkpoint(self, step: int) -> Path:
        """Where the checkpoint of `step` is (or would be) written."""
        return self.checkpoints_dir / checkpoint_name(step)

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (half-written ones have hidden names and are never listed)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [path for path in self.checkpoints_dir.iterdir() if path.is_dir() and _STEP_DIR.match(path.name)]
        return sorted(found, key=step_of)

    def holds_run(self) -> bool:
        """Whether an earlier run wrote checkpoints here."""
        return self.checkpoints_dir.exists() or (self.root / LATEST_FILE).exists()

    # -- pointers -----------------------------------------------------------------------------------------

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names, or None before the first one was completed."""
        pointer = self.root / LATEST_FILE
        if not pointer.is_file():
            return None
        return self._inside(pointer, _read_pointer_text(pointer))

    def best(self) -> tuple[Path, float] | None:
        """The checkpoint with the lowest validation loss so far, and that loss (None if none was recorded)."""
        pointer = self.root / BEST_FILE
        if not pointer.is_file():
            return None
        try:
            record = json.loads(_read_pointer_text(pointer))
            name, val_loss = record["checkpoint"], float(record["val_loss"])
        except (ValueError, TypeError, KeyError):
            raise CheckpointError(
                f"{pointer} is damaged (expected JSON with 'checkpoint' and 'val_loss'); delete it to drop the "
                "record of the best checkpoint"
            ) from None
        return self._inside(pointer, str(name)), val_loss

    def point_latest(self, checkpoint: Path) -> None:
        """Make ``latest`` name `checkpoint` (atomically)."""
        write_text_atomic(self.root / LATEST_FILE, self._relative(checkpoint) + "\n")

    def point_best(self, checkpoint: Path, val_loss: float) -> None:
        """Make ``best`` name `checkpoint` with its validation loss (atomically)."""
        record = {"checkpoint": self._relative(checkpoint), "step": step_of(checkpoint), "val_loss": val_loss}
        write_text_atomic(self.root / BEST_FILE, json.dumps(record) + "\n")

    def _relative(self, checkpoint: Path) -> str:
        return f"{CHECKPOINTS_DIR}/{checkpoint.name}"

    def _inside(self, pointer: Path, name: str) -> Path:
        """The checkpoint `name` (``checkpoints/step-N`` or ``step-N``) of this run; anything else is refused."""
        parts = Path(name).parts
        if parts[:1] == (CHECKPOINTS_DIR,):
            parts = parts[1:]
        if len(parts) != 1 or not _STEP_DIR.match(parts[0]):
            raise CheckpointError(
                f"{pointer} names {name!r}, which is not a checkpoint of this run directory "
                f"(expected {CHECKPOINTS_DIR}/step-XXXXXXXX); refusing to follow it"
            )
        checkpoint = self.checkpoints_dir / parts[0]
        if not checkpoint.is_dir():
            raise CheckpointError(f"{pointer} names {name!r}, which does not exist")
        if checkpoint.resolve().parent != self.checkpoints_dir.resolve():
            raise CheckpointError(f"{checkpoint} links outside {self.checkpoints_dir}; refusing to follow it")
        return checkpoint

    # -- preparing and cleaning up ------------------------------------------------------------------------

    def check_usable(self) -> None:
        """Fail, before any work, when the run directory cannot be one (it is a file, or inside one)."""
        for path in (self.root, *self.root.parents):
            if path.exists() and not path.is_dir():
                raise ConfigError(f"output.dir={str(self.root)!r}: {path} is a file, not a directory; choose a folder")

    def remove_run(self) -> None:
        """Delete an earlier run's checkpoints, pointers and history (``--overwrite``, under the lock)."""
        for folder in (self.checkpoints_dir, self.tensorboard_dir, self.root / WANDB_DIR):
            shutil.rmtree(folder, ignore_errors=True)
        files = (self.root / LATEST_FILE, self.root / BEST_FILE, self.metrics, self.loss_curve, self.sample)
        for path in (*files, self.trackers_state, self.data_record):
            path.unlink(missing_ok=True)

    def remove_partials(self) -> list[Path]:
        """Delete what a killed writer left half-written (``.partial-*``); `lock` calls it once it holds the lock."""
        return [*remove_partials(self.root), *remove_partials(self.checkpoints_dir)]

    # -- the lock -----------------------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock while the block runs; `RunLockedError` names the holder if another process has it.

        Once it is held, no other writer can be at work, so what a killed one left is removed.
        """
        refusal = "run directory {folder} is in use by {owner}; wait for that run to finish, or train into another "
        refusal += "directory (--set output.dir=DIR)"
        with folder_lock(self.root, refusal) as fresh:
            if fresh:
                self.remove_partials()
            yield


@contextmanager
def folder_lock(folder: Path, refusal: str) -> Iterator[bool]:
    """Hold the lock of a folder one process writes at a time (a run directory, a prepared-data folder).

    The lock is the operating system's (``filelock``: ``flock``/``LockFileEx``), so a killed holder releases
    it with its last breath and a stale ``.lock`` never blocks. The holder's pid and host are written beside
    it only to say who holds it. Another process gets `RunLockedError` with `refusal`, formatted with
    ``{folder}`` and ``{owner}``. Taking it again inside the block (the runner, then its trainer) is a no-op;
    the block receives whether this call took it (False when it was already held).
    """
    from filelock import FileLock, Timeout

    key = folder.resolve()
    if key in _HELD:
        yield False
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunLockedError(refusal.format(folder=folder, owner=_owner(folder))) from None
    _HELD.add(key)
    owner = folder / LOCK_OWNER_FILE
    try:
        write_text_atomic(owner, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        yield True
    finally:
        _HELD.discard(key)
        owner.unlink(missing_ok=True)
        lock.release()


def _owner(folder: Path) -> str:
    """The holder's pid and host, waiting up to `OWNER_WAIT_S` for a holder that has just taken the lock to
    write them."""
    deadline = time.monotonic() + OWNER_WAIT_S
    while True:
        try:
            record: dict[str, Any] = json.loads((folder / LOCK_OWNER_FILE).read_text(encoding="utf-8"))
            return f"process {int(record['pid'])} on {record['host']}"
        except FileNotFoundError:
            if time.monotonic() > deadline:
                return "another process"
            time.sleep(0.05)
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"


def _read_pointer_text(pointer: Path) -> str:
    try:
        return pointer.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise CheckpointError(f"{pointer} is damaged (not text); delete it and resume from a checkpoint") from None


def run_of(checkpoint: Path) -> RunDirectory:
    """The run directory a checkpoint directory belongs to."""
    step_of(checkpoint)  # refuses what is not named like a checkpoint
    return RunDirectory(Path(checkpoint).parent.parent)


def find_training_checkpoint(path: str | Path) -> Path:
    """A training checkpoint from a checkpoint directory or a run directory (following its ``latest``)."""
    path = Path(path)
    if (path / STATE_JSON_FILE).is_file():
        return path
    run = RunDirectory(path)
    latest = run.latest()
    if latest is not None:
        return latest
    if run.checkpoints_dir.is_dir():
        raise CheckpointError(f"run directory {path} has no '{LATEST_FILE}' file yet (no checkpoint was completed)")
    raise CheckpointError(f"{path} is neither a run directory (with '{LATEST_FILE}') nor a training checkpoint")


def find_model_directory(path: str | Path) -> Path:
    """The model directory `path` names: itself, or a run directory's latest checkpoint.

    A run directory is followed through its ``latest`` file (in the run directory or, as older runs wrote it,
    in its ``checkpoints/`` folder); without one, the checkpoint with the highest step is taken.
    """
    path = Path(path)
    if (path / MODEL_CONFIG_FILE).is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint path {str(path)!r} does not exist")
    run = RunDirectory(path)
    checkpoint = run.latest()
    if checkpoint is None and (run.checkpoints_dir / LATEST_FILE).is_file():
        pointer = run.checkpoints_dir / LATEST_FILE
        checkpoint = run._inside(pointer, _read_pointer_text(pointer))
    if checkpoint is None:
        complete = [candidate for candidate in run.checkpoints() if (candidate / MODEL_CONFIG_FILE).is_file()]
        checkpoint = complete[-1] if complete else None
    if checkpoint is None:
        raise CheckpointError(
            f"{str(path)!r} is neither a model directory (no {MODEL_CONFIG_FILE}) nor a run directory "
            f"(no {LATEST_FILE} file, no {CHECKPOINTS_DIR}/step-* folders)"
        )
    if not (checkpoint / MODEL_CONFIG_FILE).is_file():
        raise CheckpointError(f"{checkpoint} has no {MODEL_CONFIG_FILE}: it is not a complete checkpoint")
    return checkpoint
