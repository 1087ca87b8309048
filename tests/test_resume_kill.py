"""A run killed with SIGKILL mid-training and resumed ends bitwise identical to a run that never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import safetensors.torch
import torch

from cleangpt_core.testing.trainer import run_tiny_training

RUN = [sys.executable, "-m", "cleangpt_core.testing.trainer", "--epochs", "3", "--checkpoint-interval", "5"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("optimizer", "schedule"),
    [(None, None), ("muon", "wsd")],
    ids=["adamw", "muon-wsd"],
)
def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(tmp_path, optimizer, schedule, wait_for):
    components = {"optimizer": optimizer, "schedule": schedule}
    chosen = [part for name, value in components.items() if value for part in (f"--{name}", value)]
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([*RUN, str(killed_dir), "--step-delay", "0.1", *chosen])
    try:
        wait_for(process, (killed_dir / "latest").is_file, "the first checkpoint")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = int((killed_dir / "latest").read_text().strip().rsplit("-", 1)[1])
    assert killed_at < 36, "the kill must come before the end of training (36 steps)"

    subprocess.run([*RUN, str(killed_dir), "--resume", *chosen], check=True)
    straight = run_tiny_training(
        "advanced", tmp_path / "straight", num_epochs=3, checkpoint_interval=5, **components
    )

    resumed = safetensors.torch.load_file(str(killed_dir / "checkpoints" / "step-00000036" / "model.safetensors"))
    assert straight.progress.step == 36
    for name, tensor in straight.raw_model.state_dict().items():
        if name in resumed:  # tied weights are stored once
            assert torch.equal(resumed[name], tensor), name
