"""Worker processes die with the process that started them (issue 25, fault 12): torchrun's workers with a
launcher killed alone, prepare-data's tokenizer workers with their prepare, and nothing else with its parent."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cleangpt_core.data.document_sources import DocumentSource
from cleangpt_core.data.shard_writer import prepare_data
from cleangpt_core.tokenizers import CharacterTokenizer

PR_GET_PDEATHSIG = 2


def _children(pid: int) -> list[int]:
    return [
        int(child) for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()
    ]


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


@pytest.mark.slow
def test_torchrun_workers_die_when_their_launcher_is_killed_alone(tmp_path, wait_for):
    run_dir = tmp_path / "run"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
        *("-m", "cleangpt_core.testing.trainer", str(run_dir), "--trainer", "simple", "--batch-size", "4"),
        *("--epochs", "100", "--checkpoint-interval", "1", "--step-delay", "0.2"),
    ]
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        wait_for(launcher, (run_dir / "latest").is_file, "the first checkpoint", timeout=240)  # both ranks joined
        workers = _children(launcher.pid)
        assert len(workers) == 2
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in workers):
            assert time.monotonic() < deadline, "torchrun's workers outlived their launcher"
            time.sleep(0.05)
    finally:
        launcher.kill()
        for pid in workers:  # on failure, leave no training behind
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_process_whose_parent_died_before_it_asked_ends_at_once():
    """The race: a parent that dies between starting the worker and the request is seen after the request."""
    code = "from cleangpt_core.distributed.parent_death import die_with_parent; die_with_parent(parent=1); print(1)"
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ended.returncode == -signal.SIGKILL and ended.stdout == ""


def test_a_prepare_tokenizing_in_its_own_process_does_not_tie_itself_to_its_parent(tmp_path):
    """Only pool workers die with their parent: with --num-proc 1 the prepare is the process a user started,
    which must outlive the shell that started it (nohup)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    signal_number = ctypes.c_int(-1)
    (tmp_path / "a.txt").write_text("some words to prepare")
    source = DocumentSource.from_argument(tmp_path / "a.txt")
    prepare_data(source, CharacterTokenizer().fit("some words to prepare"), tmp_path / "out", num_proc=1)
    prctl(PR_GET_PDEATHSIG, ctypes.byref(signal_number))
    assert signal_number.value == 0
