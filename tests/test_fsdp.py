"""FSDP2 under torchrun on CPU processes (gloo): the curve of one process, exact resume, kills and two nodes.

Each test launches real torchrun processes of `cleangpt_core.testing.trainer` (the tiny counting problem),
so they are slow. The reference is one process with the same global batch (2 ranks x 4 = 1 x 8). The runs
checkpoint as shards (tests/test_sharded_checkpoints.py); their single-file model is made when first read.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cleangpt_core.model.serialization import load_model, read_checkpoint_weights
from cleangpt_core.testing.trainer import run_tiny_training
from cleangpt_core.trainers.training_checkpoint import read_state

pytestmark = pytest.mark.slow

RUN = ["-m", "cleangpt_core.testing.trainer"]
FSDP_DEFAULT = ["--trainer", "advanced", "--batch-size", "4", "--dropout", "0", "--epochs", "2"]
FSDP_DEFAULT += ["--checkpoint-interval", "6", "--strategy", "fsdp"]  # mixed_precision: the default, "auto"
# fp32: the curves of one and two processes agree to float rounding; bf16 would round the gradients of each
# rank's half batch apart from those of the whole batch
FSDP = [*FSDP_DEFAULT, "--mixed-precision", "no"]
STEPS = 24  # 96 windows / global batch 8, two epochs


def torchrun(*arguments: str, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *arguments]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint_weights(run_dir / "checkpoints" / f"step-{STEPS:08d}")  # consolidated from the shards


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """A two-process FSDP run that never stopped: its run directory and its per-step losses."""
    work = tmp_path_factory.mktemp("fsdp")
    run_dir, losses = work / "run", work / "losses.json"
    subprocess.run(torchrun(*RUN, str(run_dir), *FSDP, "--losses-out", str(losses)), check=True, timeout=600)
    return run_dir, json.loads(losses.read_text())


@pytest.fixture(scope="module")
def single() -> list[float]:
    """The loss curve of one process with the same global batch."""
    return run_tiny_training(
        "advanced", None, batch_size=8, model_options={"dropout": 0.0}, num_epochs=2, mixed_precision="no"
    ).losses


def test_two_fsdp_processes_follow_the_loss_curve_of_one_process(straight, single):
    run_dir, losses = straight
    assert len(losses) == len(single) == STEPS
    assert losses == pytest.approx(single, rel=1e-5, abs=1e-6)
    assert losses[-1] < losses[0] - 0.5
    # the shards make an ordinary model directory on its first load
    model = load_model(run_dir)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert read_state(run_dir / "checkpoints" / f"step-{STEPS:08d}")["strategy"] == "fsdp"


def test_a_resumed_fsdp_run_ends_bitwise_equal_to_one_that_never_stopped(straight, tmp_path):
    run_dir = tmp_path / "resumed"
    subprocess.run(torchrun(*RUN, str(run_dir), *FSDP, "--max-steps", "9"), check=True, timeout=600)
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-00000009"  # mid-epoch
    subprocess.run(torchrun(*RUN, str(run_dir), *FSDP, "--resume"), check=True, timeout=600)
    expected, resumed = final_weights(straight[0]), final_weights(run_dir)
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)


def test_in_the_default_precision_too_a_resumed_fsdp_run_ends_bitwise_equal(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    subprocess.run(torchrun(*RUN, str(straight), *FSDP_DEFAULT), check=True, timeout=600)
    subprocess.run(torchrun(*RUN, str(resumed), *FSDP_DEFAULT, "--max-steps", "9"), check=True, timeout=600)
    subprocess.run(torchrun(*RUN, str(resumed), *FSDP_DEFAULT, "--resume"), check=True, timeout=600)
    expected, actual = final_weights(straight), final_weights(resumed)
    assert all(torch.equal(expected[name], actual[name]) for name in expected)


def test_an_fsdp_checkpoint_resumes_on_one_process_and_says_so(straight, tmp_path):
    run_dir = tmp_path / "moved"
    subprocess.run(torchrun(*RUN, str(run_dir), *FSDP, "--max-steps", "9"), check=True, timeout=600)
    one_process = ["--trainer", "advanced", "--batch-size", "8", "--dropout", "0", "--epochs", "2", "--resume"]
    one_process += ["--mixed-precision", "no"]
    done = subprocess.run(
        [sys.executable, *RUN, str(run_dir), *one_process], check=True, timeout=600, capture_output=True, text=True
    )
    assert "written with strategy fsdp on 2 process(es), with strategy none on 1" in done.stderr
    assert "skipped" not in done.stderr  # the global batch is unchanged, so the data order continues exactly
    expected, resumed = final_weights(straight[0]), final_weights(run_dir)
    for name in expected:  # the same samples in every step; only the order of float sums differs
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-4)


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split()]


def test_killing_a_rank_leaves_the_last_checkpoint_loadable(tmp_path, wait_for):
    run_dir = tmp_path / "killed"
    launcher = subprocess.Popen(torchrun(*RUN, str(run_dir), *FSDP, "--step-delay", "0.2"))
    try:
        wait_for(launcher, (run_dir / "latest").is_file, "the first checkpoint", timeout=300)
        workers = _children(launcher.pid)
        assert len(workers) == 2
        os.kill(workers[1], signal.SIGKILL)
        launcher.wait(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode != 0
    latest = run_dir / (run_dir / "latest").read_text().strip()
    assert int(latest.name.rsplit("-", 1)[1]) < STEPS, "the kill must come before the end of training"
    model = load_model(latest)  # the weights load
    assert read_state(latest)["progress"]["step"] == int(latest.name.rsplit("-", 1)[1])
    assert model.get_num_params() > 0
    subprocess.run(torchrun(*RUN, str(run_dir), *FSDP, "--resume"), check=True, timeout=600)
    assert (run_dir / "latest").read_text().strip() == f"checkpoints/step-{STEPS:08d}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_of_one_process_on_loopback_follow_the_same_curve(straight, tmp_path):
    # with activation checkpointing too: recomputing the blocks' activations changes no number
    run_dir, losses = tmp_path / "two-nodes", tmp_path / "losses.json"
    endpoint = f"--rdzv-endpoint=127.0.0.1:{_free_port()}"
    nodes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}"),
                *("--nproc-per-node=1", endpoint),
                *(*RUN, str(run_dir), *FSDP, "--activation-checkpointing", "--losses-out", str(losses)),
            ]
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        assert node.wait(timeout=600) == 0
    assert json.loads(losses.read_text()) == pytest.approx(straight[1], rel=1e-5, abs=1e-6)


def _evaluate_sharded(rank: int, init_file: str, out: str) -> None:
    from torch.utils.data import DataLoader

    from cleangpt_core.distributed.process_group import current_context
    from cleangpt_core.distributed.strategies import prepare_model
    from cleangpt_core.testing.trainer import CountingLanguage, tiny_model
    from cleangpt_core.trainers.evaluation import evaluate_model

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = prepare_model(tiny_model(seed=3), "fsdp", torch.device("cpu"))
        batches = DataLoader(CountingLanguage(20, 16, 17, seed=1), batch_size=4)  # 5 batches: 3 and 2
        metrics = evaluate_model(model, batches, torch.device("cpu"), context=current_context(), lockstep=True)
        if rank == 0:
            Path(out).write_text(json.dumps(metrics))
    finally:
        torch.distributed.destroy_process_group()


def test_fsdp_evaluation_over_an_uneven_number_of_batches_counts_every_token_once(tmp_path):
    from torch.utils.data import DataLoader

    from cleangpt_core.testing.trainer import CountingLanguage, tiny_model
    from cleangpt_core.trainers.evaluation import evaluate_model

    out = tmp_path / "metrics.json"
    torch.multiprocessing.spawn(_evaluate_sharded, args=(str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    sharded = json.loads(out.read_text())
    alone = evaluate_model(tiny_model(seed=3), DataLoader(CountingLanguage(20, 16, 17, seed=1), batch_size=4), "cpu")
    assert sharded["tokens"] == alone["tokens"] == 20 * 15
    assert sharded["loss"] == pytest.approx(alone["loss"], rel=1e-6)
