"""The same trainer under torchrun: two CPU processes (gloo) follow the loss curve of one process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cleangpt_core.distributed.process_group import DistributedContext, backend_for
from cleangpt_core.testing.trainer import run_tiny_training, tiny_loaders
from cleangpt_core.trainers.batches import EpochBatches
from cleangpt_core.trainers.metrics import read_metrics

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def test_ranks_get_disjoint_shards_that_together_make_the_global_batch():
    single = EpochBatches(tiny_loaders(batch_size=8)[0], seed=3, context=DistributedContext())
    ranks = [
        EpochBatches(tiny_loaders(batch_size=4)[0], seed=3, context=DistributedContext(rank=r, world_size=2))
        for r in (0, 1)
    ]
    for step, batch in enumerate(single.epoch(1)):
        parts = [list(rank.epoch(1))[step]["input_ids"] for rank in ranks]
        assert sorted(map(tuple, torch.cat(parts).tolist())) == sorted(map(tuple, batch["input_ids"].tolist()))
    assert len(ranks[0]) == len(ranks[1]) == len(single)


def test_gloo_on_cpu_and_nccl_on_gpu():
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"


@pytest.mark.slow
def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(tmp_path):
    run_dir, losses_file = tmp_path / "ddp", tmp_path / "losses.json"
    command = [
        *TORCHRUN,
        "-m",
        "cleangpt_core.testing.trainer",
        str(run_dir),
        "--trainer",
        "simple",
        "--batch-size",
        "4",
        "--dropout",
        "0",
        "--epochs",
        "2",
        "--checkpoint-interval",
        "6",
        "--losses-out",
        str(losses_file),
    ]
    subprocess.run(command, check=True, timeout=300)
    distributed = json.loads(losses_file.read_text())
    single = run_tiny_training("simple", None, batch_size=8, model_options={"dropout": 0.0}, num_epochs=2)
    assert len(distributed) == len(single.losses) == 24
    assert distributed == pytest.approx(single.losses, rel=1e-4, abs=1e-5)
    assert distributed[-1] < distributed[0] - 0.5
    # rank 0 alone wrote the checkpoints and the metrics, once each
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-00000024"
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [10, 20, 24]
    assert [r["step"] for r in records if "val_loss" in r] == [24]
