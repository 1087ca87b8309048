"""The run directory: one layout, one atomic-write helper, pointers that stay inside, a lock, a history that
survives kills."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from cleangpt_core.checkpoints.atomic_write import PARTIAL_PREFIX, atomic_target, write_text_atomic
from cleangpt_core.checkpoints.run_dir import RunDirectory, find_model_directory, find_training_checkpoint
from cleangpt_core.errors import CheckpointError, CheckpointWriteError, RunLockedError
from cleangpt_core.model import get_model
from cleangpt_core.trainers.metrics import read_metrics
from cleangpt_core.trainers.training_checkpoint import CheckpointManager

PACKAGE = Path(__file__).parents[1] / "cleangpt_core"


def test_one_helper_in_the_package_renames_files_into_place():
    renaming = re.compile(r"os\.replace\(|\.rename\(|os\.rename\(")
    writers = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if renaming.search(path.read_text())
    )
    assert writers == ["checkpoints/atomic_write.py"]


def test_an_atomic_write_that_fails_keeps_the_old_content_and_leaves_nothing_aside(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_target(target) as aside:
        aside.write_text("half of the ne")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_an_atomic_directory_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "step-00000001"
    target.mkdir()
    (target / "stale.txt").write_text("from the first save")
    with atomic_target(target, directory=True) as aside:
        (aside / "fresh.txt").write_text("from the second")
    assert [path.name for path in target.iterdir()] == ["fresh.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["step-00000001"]


def test_checkpoint_files_honour_the_umask(tmp_path):
    model = get_model("Vanilla", vocab_size=11, n_layer=1, n_head=2, n_embd=16, block_size=8)
    previous = os.umask(0o022)
    try:
        checkpoint = CheckpointManager(tmp_path).save(1, model, {"step": 1})
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in checkpoint.iterdir()}
    assert modes == dict.fromkeys(modes, 0o644)  # safetensors alone would write 0600
    assert (tmp_path / "latest").stat().st_mode & 0o777 == 0o644


def _victim_and_attacker(tmp_path: Path) -> tuple[CheckpointManager, Path]:
    victim = CheckpointManager(tmp_path / "victim")
    victim.save(100, nn.Linear(2, 2), {})
    attacker = tmp_path / "attacker"
    (attacker / "checkpoints").mkdir(parents=True)
    return victim, attacker


@pytest.mark.parametrize(
    "pointer", ["../victim/checkpoints/step-00000100", "checkpoints/../../victim/checkpoints/step-00000100", "/etc"]
)
def test_latest_naming_a_checkpoint_outside_its_run_is_refused(tmp_path, pointer):
    _, attacker = _victim_and_attacker(tmp_path)
    (attacker / "latest").write_text(pointer + "\n")
    with pytest.raises(CheckpointError, match="not a checkpoint of this run directory"):
        RunDirectory(attacker).latest()
    with pytest.raises(CheckpointError, match="not a checkpoint of this run directory"):
        find_training_checkpoint(attacker)
    with pytest.raises(CheckpointError, match="not a checkpoint of this run directory"):
        find_model_directory(attacker)


def test_best_naming_a_checkpoint_outside_its_run_is_refused(tmp_path):
    _, attacker = _victim_and_attacker(tmp_path)
    record = {"checkpoint": "../victim/checkpoints/step-00000100", "step": 100, "val_loss": 0.0}
    (attacker / "best").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="not a checkpoint of this run directory"):
        RunDirectory(attacker).best()


def test_a_checkpoint_symlinked_out_of_its_run_is_refused(tmp_path):
    victim, attacker = _victim_and_attacker(tmp_path)
    (attacker / "checkpoints" / "step-00000100").symlink_to(victim.latest())
    (attacker / "latest").write_text("checkpoints/step-00000100\n")
    with pytest.raises(CheckpointError, match="links outside"):
        RunDirectory(attacker).latest()


def test_a_damaged_best_pointer_names_the_file(tmp_path):
    CheckpointManager(tmp_path).save(1, nn.Linear(2, 2), {}, val_loss=1.0)
    (tmp_path / "best").write_text('{"checkpoint": "checkpoints/step-000')
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(tmp_path / 'best'))} is damaged"):
        CheckpointManager(tmp_path).best()


def test_a_full_disk_is_a_checkpoint_write_error_and_keeps_the_last_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path)
    first = manager.save(1, nn.Linear(2, 2), {"step": 1})
    big = {"weights": torch.zeros(1 << 20)}  # 4 MiB of trainer state, over the file size limit below
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*step-00000002.*still"):
            manager.save(2, nn.Linear(2, 2), big)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert manager.latest() == first
    assert [path.name for path in manager.root.iterdir()] == ["step-00000001"]


def test_leftovers_of_a_killed_writer_are_removed(tmp_path):
    run = RunDirectory(tmp_path)
    (run.checkpoints_dir / f"{PARTIAL_PREFIX}step-00000003-4242-beef").mkdir(parents=True)
    (tmp_path / f"{PARTIAL_PREFIX}latest-4242-beef").write_text("checkpoints/step-0000")
    assert len(run.remove_partials()) == 2
    assert list(run.checkpoints_dir.iterdir()) == [] and sorted(tmp_path.iterdir()) == [run.checkpoints_dir]


def test_the_lock_records_its_holder_and_taking_it_again_in_the_same_process_is_a_no_op(tmp_path):
    run = RunDirectory(tmp_path / "run")
    with run.lock():
        owner = json.loads((run.root / ".lock.owner").read_text())
        assert owner == {"pid": os.getpid(), "host": socket.gethostname()}
        with RunDirectory(tmp_path / "run").lock():  # the runner holds it, then its trainer asks again
            pass
        assert (run.root / ".lock.owner").is_file()  # still held by the outer block
    assert not (run.root / ".lock.owner").exists()


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from cleangpt_core.checkpoints.run_dir import RunDirectory

    with RunDirectory(sys.argv[1]).lock():
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_a_lock_held_by_another_process_blocks_until_that_process_is_killed(tmp_path):
    run = RunDirectory(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid} "), run.lock():
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with run.lock():  # the stale lock file of the killed process does not block
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_trainer_used_from_python_takes_the_lock_too(tmp_path):
    from cleangpt_core.testing.trainer import build_tiny_trainer

    run = RunDirectory(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        trainer = build_tiny_trainer("simple", output_dir=run.root, max_steps=2)
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid} "):
            trainer.train()
        assert not run.checkpoints_dir.exists()
    finally:
        holder.kill()
        holder.wait()


KILL_WHILE_RESUMING_THE_LOG = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from cleangpt_core.trainers.metrics import MetricsLogger

    logger = MetricsLogger(Path(sys.argv[1]), log_interval=1, start_step=int(sys.argv[2]))  # open, not closed
    os.kill(os.getpid(), signal.SIGKILL)  # killed during start-up, right after the logger opened the file
    """
)


def _history(run: Path, steps: range) -> list[dict]:
    lines = [{"step": step, "loss": 4.0 - step / 10} for step in steps]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return lines


@pytest.mark.parametrize("resumed_at", [8, 5])
def test_a_kill_while_a_resumed_run_opens_its_log_keeps_the_history(tmp_path, resumed_at):
    lines = _history(tmp_path, range(1, 9))
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_RESUMING_THE_LOG, str(tmp_path), str(resumed_at)])
    assert killed.returncode == -signal.SIGKILL
    assert read_metrics(tmp_path / "metrics.jsonl") == lines[:resumed_at]


def test_a_line_cut_short_by_a_kill_is_dropped_when_the_run_resumes(tmp_path):
    from cleangpt_core.trainers.metrics import MetricsLogger

    lines = _history(tmp_path, range(1, 5))
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 5, "lo')
    MetricsLogger(tmp_path, log_interval=1, start_step=4).close(4, None)
    assert read_metrics(tmp_path / "metrics.jsonl") == lines


def test_text_written_atomically_is_complete(tmp_path):
    write_text_atomic(tmp_path / "sample.txt", "To be")
    write_text_atomic(tmp_path / "sample.txt", "or not to be")
    assert (tmp_path / "sample.txt").read_text() == "or not to be"
