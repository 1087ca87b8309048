"""What a GPU needs of a training run, checked on a CPU that tells the host and the device apart (DeviceChecks).

- a step that neither logs, evaluates nor checkpoints makes no host sync (the GPU never waits for the host);
- no float64 tensor is ever made on the training device (MPS has none; on CUDA it is slow);
- collectives get device tensors only (NCCL refuses host tensors), with torchrun and gloo standing in for NCCL;
- batches are copied asynchronously only from pinned memory.

(Each torchrun rank's device: tests/test_devices.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import pytest

from cleangpt_core.testing.device_checks import DeviceChecks
from cleangpt_core.testing.trainer import build_tiny_trainer

STEPS, INTERVAL = 8, 4  # steps 4 and 8 log, evaluate and checkpoint; 1-3 and 5-7 do none of it
QUIET_STEPS = [step for step in range(1, STEPS + 1) if step % INTERVAL]
TRAINERS = {"simple": {}, "advanced": {"grad_clip": 1.0, "mixed_precision": "no"}}


@cache
def checked_run(trainer: str, architecture: str, run_dir: str) -> DeviceChecks:
    with DeviceChecks() as checks:
        build_tiny_trainer(
            trainer,
            architecture=architecture,
            device=checks.device,
            output_dir=run_dir,
            callbacks=[checks],
            model_options={"dropout": 0.0},
            max_steps=STEPS,
            log_interval=INTERVAL,
            eval_interval=INTERVAL,
            eval_max_batches=2,
            checkpoint_interval=INTERVAL,
            **TRAINERS[trainer],
        ).train()
    return checks


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return lambda trainer, architecture: checked_run(
        trainer, architecture, str(tmp_path_factory.getbasetemp() / f"{trainer}-{architecture}")
    )


# each run is one tiny training of 8 steps under DeviceChecks (about 10 s: every operation is followed)
CASES = [
    pytest.param(trainer, architecture, marks=pytest.mark.slow)
    for trainer in TRAINERS
    for architecture in ("Vanilla", "Llama", "SASP")
]


@pytest.mark.parametrize(("trainer", "architecture"), CASES)
def test_a_step_that_neither_logs_nor_evaluates_makes_no_host_sync(run, trainer, architecture):
    checks = run(trainer, architecture)
    assert {step: checks.syncs_in(step) for step in QUIET_STEPS} == {step: [] for step in QUIET_STEPS}
    assert checks.syncs_in(INTERVAL), "a logging step reads its losses back: the checks must see that"


@pytest.mark.parametrize(("trainer", "architecture"), CASES)
def test_no_float64_tensor_is_made_on_the_training_device_in_training_or_evaluation(run, trainer, architecture):
    assert run(trainer, architecture).float64 == []


@pytest.mark.parametrize(("trainer", "architecture"), CASES)
def test_no_host_tensor_meets_a_device_tensor_and_no_copy_is_async_from_unpinned_memory(run, trainer, architecture):
    assert run(trainer, architecture).faults == []


def test_the_logged_losses_are_the_losses_of_a_run_that_reads_every_step():
    """Reading back only on logging steps changes no number: per-step losses and the metrics' means agree."""
    every_step = build_tiny_trainer("simple", max_steps=6, log_interval=1, model_options={"dropout": 0.0})
    every_step.train()
    seen: list[float] = []

    class ReadsTheLoss:
        def on_step_end(self, metrics):
            seen.append(metrics["loss"])  # a receiver may still read it on every step

    batched = build_tiny_trainer(
        "simple", max_steps=6, log_interval=3, model_options={"dropout": 0.0}, callbacks=[ReadsTheLoss()]
    )
    batched.train()
    assert batched.losses == every_step.losses == seen


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_under_torchrun_collectives_get_device_tensors_and_quiet_steps_make_no_sync(tmp_path, strategy):
    report = tmp_path / "checks"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "cleangpt_core.testing.trainer", str(tmp_path / "run"), "--strategy", strategy]
    command += ["--batch-size", "4", "--max-steps", str(STEPS), "--log-interval", str(INTERVAL)]
    command += ["--checkpoint-interval", str(INTERVAL), "--grad-clip", "1.0", "--mixed-precision", "no"]
    subprocess.run([*command, "--device-checks", str(report)], check=True, timeout=600)
    for rank in (0, 1):
        checks = json.loads((tmp_path / f"checks-{rank}.json").read_text())
        assert checks["faults"] == []
        assert checks["float64"] == []
        assert {step: checks["syncs"].get(str(step), []) for step in QUIET_STEPS} == {step: [] for step in QUIET_STEPS}
