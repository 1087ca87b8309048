"""Sharded checkpoints: FSDP2 on two CPU processes (gloo) checkpoints through torch.distributed.checkpoint.

Each process writes its own shards and nothing is gathered; the checkpoint holds safetensors and JSON only;
FSDP2 gathers a bf16 run's weights in bf16 and reduces in fp32; the state a run resumes from is bitwise the
state that was written, when 2 processes' shards resume on 1 process and when 1 process's checkpoint resumes
sharded on 2; the single-file model is made from the shards on its first load. The loss curves of resumed
sharded runs are in tests/test_fsdp.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from two_ranks import on_two_ranks

from cleangpt_core.distributed.strategies import full_model_state, full_optimizer_state
from cleangpt_core.model.serialization import load_model
from cleangpt_core.model.weights_header import read_header
from cleangpt_core.testing.trainer import build_tiny_trainer
from cleangpt_core.trainers.base_trainer import BaseTrainer
from cleangpt_core.trainers.training_checkpoint import read_rng_state, read_state, write_state

pytestmark = pytest.mark.slow  # two processes each

STEPS = 6
OPTIONS: dict[str, Any] = {
    "num_epochs": 2,
    "max_steps": STEPS,
    "checkpoint_interval": STEPS,
    "mixed_precision": "bf16",
    "model_options": {"dropout": 0.1},
}


def _record_written(trainer: BaseTrainer, directory: Path, **more: Any) -> None:
    """The whole state a trainer holds (gathered, for the test only), written by rank 0 as trainer state."""
    weights, optimizer = full_model_state(trainer.raw_model), full_optimizer_state(trainer.raw_model, trainer.optimizer)
    if trainer.context.is_main:
        directory.mkdir(exist_ok=True)
        write_state(directory, {"weights": weights, "optimizer": optimizer, **more})


def _refuse_to_gather(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a sharded run gathered its full state to write a checkpoint")


def _train_sharded(rank: int, run_dir: Path, written: Path) -> None:
    import cleangpt_core.trainers.base_trainer as base_trainer

    base_trainer.full_model_state = _refuse_to_gather  # what an unsharded checkpoint gathers
    base_trainer.full_optimizer_state = _refuse_to_gather
    trainer = build_tiny_trainer("advanced", batch_size=4, output_dir=run_dir, strategy="fsdp", **OPTIONS)
    gathered: list[str] = []
    mlp = trainer.raw_model.transformer.h[0].mlp
    mlp.register_forward_pre_hook(lambda module, _: gathered.append(str(module.c_fc.weight.dtype)))
    trainer.train()
    policies = {
        name: [str(policy.param_dtype), str(policy.reduce_dtype)]
        for name, module in (("block", trainer.raw_model.transformer.h[0]), ("model", trainer.raw_model))
        for policy in [module._get_fsdp_state()._mp_policy]  # FSDP2 keeps each module's policy in its state
    }
    _record_written(trainer, written, policies=policies, gathered=gathered[0])


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() <= expected.keys()
    differing = [name for name, tensor in actual.items() if not torch.equal(tensor, expected[name])]
    assert differing == []


def _groups(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameter groups, their tuples as lists (torch hands betas back as either)."""
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()} for group in state["param_groups"]]


def _assert_same_optimizer(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert _groups(actual) == _groups(expected)
    assert actual["state"].keys() == expected["state"].keys()
    for index, values in expected["state"].items():
        assert values.keys() == actual["state"][index].keys()
        assert all(torch.equal(actual["state"][index][key], value) for key, value in values.items()), index


def test_two_processes_write_their_own_shards_which_resume_on_one_process_to_the_bit(tmp_path):
    run_dir, reference = tmp_path / "run", tmp_path / "written"
    on_two_ranks(_train_sharded, run_dir, reference)
    written = read_state(reference)
    checkpoint = run_dir / "checkpoints" / f"step-{STEPS:08d}"

    shards = sorted((checkpoint / "shards").iterdir())
    assert [path.name for path in shards] == [f"shard-0000{rank}-model-00001-of-00001.safetensors" for rank in (1, 2)]
    assert read_header(shards[0], AssertionError)["model.transformer.h.0.mlp.c_fc.weight"] == (64, 32)  # of 128
    assert {path.suffix for path in checkpoint.rglob("*") if path.is_file()} == {".json", ".safetensors"}
    assert not (checkpoint / "model.safetensors").exists()  # made on demand, below
    assert written["policies"] == {name: ["torch.bfloat16", "torch.float32"] for name in ("block", "model")}
    assert written["gathered"] == "torch.bfloat16"
    rng = [read_rng_state(checkpoint, rank)["torch"] for rank in (0, 1)]
    assert not torch.equal(*rng), "each process has its own dropout generator"

    resumed = build_tiny_trainer("advanced", model_seed=1, batch_size=8, output_dir=run_dir, **OPTIONS)
    resumed.load_checkpoint(run_dir)
    assert resumed.strategy == "none"
    _assert_same(resumed.raw_model.state_dict(), written["weights"])
    _assert_same_optimizer(resumed.optimizer.state_dict(), written["optimizer"])
    assert torch.equal(resumed._rng_to_restore["torch"], rng[0])  # rank 0 continues with rank 0's generator

    _assert_same(load_model(run_dir).state_dict(), written["weights"])
    assert (checkpoint / "model.safetensors").is_file()
    assert read_state(checkpoint)["sharded"] is True


def _resume_sharded(rank: int, run_dir: Path, loaded: Path) -> None:
    trainer = build_tiny_trainer("advanced", model_seed=1, batch_size=4, output_dir=run_dir, strategy="fsdp", **OPTIONS)
    trainer.load_checkpoint(run_dir)
    _record_written(trainer, loaded)


def test_one_process_s_checkpoint_resumes_sharded_on_two_processes_to_the_bit(tmp_path):
    run_dir, loaded = tmp_path / "run", tmp_path / "loaded"
    single = build_tiny_trainer("advanced", batch_size=8, output_dir=run_dir, **OPTIONS)
    single.train()
    on_two_ranks(_resume_sharded, run_dir, loaded)
    state = read_state(loaded)
    _assert_same(single.raw_model.state_dict(), state["weights"])
    _assert_same_optimizer(state["optimizer"], single.optimizer.state_dict())
