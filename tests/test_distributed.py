"""The same trainer under torchrun: two CPU processes (gloo) follow the loss curve of one process, each with
its own dropout masks over the data order one process would see."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from two_ranks import on_two_ranks

from cleangpt_core.distributed.process_group import DistributedContext, backend_for
from cleangpt_core.testing.trainer import build_tiny_trainer, run_tiny_training, tiny_loaders
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


def _first_step_seen(rank: int, seed: int, out: Path) -> None:
    trainer = build_tiny_trainer("simple", batch_size=4, strategy="ddp", seed=seed, max_steps=1)
    seen: dict[str, list] = {}

    def record(key: str, tensor: torch.Tensor) -> None:  # a hook that returns nothing leaves the output alone
        seen.setdefault(key, tensor.tolist())

    model = trainer.raw_model
    model.transformer.wte.register_forward_hook(lambda _, args, __: record("tokens", args[0]))
    model.transformer.drop.register_forward_hook(lambda _, __, output: record("mask", output == 0))
    trainer.train()
    (out / f"rank-{rank}.json").write_text(json.dumps(seen))


@pytest.mark.slow
def test_each_process_draws_its_own_dropout_masks_over_the_same_data_order(tmp_path):
    on_two_ranks(_first_step_seen, 5, tmp_path)
    seen = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert seen[0]["mask"] != seen[1]["mask"]  # one seed for all would drop the same units on every rank
    for rank, first in enumerate(seen):  # the data order is (seed, epoch)'s, however the ranks draw dropout
        order = EpochBatches(tiny_loaders(batch_size=4)[0], seed=5, context=DistributedContext(rank, 2))
        assert first["tokens"] == next(iter(order.epoch(0)))["input_ids"].tolist()
