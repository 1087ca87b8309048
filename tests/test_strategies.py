"""Training strategies in one process: the choice, the options, strategy-independent state, the data order."""

from __future__ import annotations

import logging

import pytest
import torch

from cleangpt_core.distributed.process_group import DistributedContext
from cleangpt_core.distributed.strategies import (
    choose_strategy,
    find_blocks,
    fsdp_precision,
    full_optimizer_state,
    load_full_optimizer_state,
    prepare_model,
)
from cleangpt_core.errors import ConfigError
from cleangpt_core.testing.trainer import build_tiny_trainer, tiny_loaders, tiny_model
from cleangpt_core.trainers.batches import EpochBatches

CPU = torch.device("cpu")
TWO = DistributedContext(rank=0, world_size=2)


def test_one_process_trains_the_model_as_it_is_whatever_is_asked(caplog):
    for requested in ("auto", "ddp"):
        assert choose_strategy(requested, DistributedContext(), CPU, 10**6) == "none"
    with caplog.at_level(logging.WARNING):
        assert choose_strategy("fsdp", DistributedContext(), CPU, 10**6) == "none"
    assert "nothing to shard" in caplog.text


def test_several_processes_take_ddp_by_default_and_fsdp_when_asked():
    assert choose_strategy("auto", TWO, CPU, 10**9) == "ddp"  # the CPU's memory is not the limit here
    assert choose_strategy("ddp", TWO, CPU, 10**6) == "ddp"
    assert choose_strategy("fsdp", TWO, CPU, 10**6) == "fsdp"


def test_the_blocks_are_found_without_the_architecture_naming_them():
    model = tiny_model()
    assert find_blocks(model) == list(model.transformer.h)
    with pytest.raises(ConfigError, match="no nn.ModuleList of blocks"):
        find_blocks(torch.nn.Linear(2, 2))


def test_activation_checkpointing_keeps_names_losses_and_gradients():
    tokens = torch.randint(0, 17, (4, 16), generator=torch.Generator().manual_seed(0))
    gradients = []
    for checkpointing in (False, True):
        model = prepare_model(tiny_model(dropout=0.0), "none", CPU, activation_checkpointing=checkpointing)
        model(tokens, labels=tokens)["loss"].backward()
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    assert gradients[0].keys() == gradients[1].keys()
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, rtol=1e-5, atol=1e-7)


def test_the_saved_optimizer_state_is_an_unsharded_state_dict_and_loads_back():
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-3)
    tokens = torch.randint(0, 17, (4, 16), generator=torch.Generator().manual_seed(0))
    model(tokens, labels=tokens)["loss"].backward()
    optimizer.step()
    saved, native = full_optimizer_state(model, optimizer), optimizer.state_dict()
    assert saved["param_groups"] == native["param_groups"]
    assert saved["state"].keys() == native["state"].keys()
    for index, values in native["state"].items():
        assert all(torch.equal(saved["state"][index][key], value) for key, value in values.items())
    optimizer.zero_grad(set_to_none=True)  # as after every optimizer step of a trainer
    fresh = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-3)
    load_full_optimizer_state(model, fresh, saved)
    assert all(torch.equal(fresh.state_dict()["state"][0][k], v) for k, v in native["state"][0].items())


def test_sharding_refuses_an_optimizer_it_cannot_carry_over_before_touching_the_model():
    model = tiny_model()
    stepped = torch.optim.SGD(model.parameters(), lr=0.1)
    stepped.state[next(model.parameters())] = {"momentum_buffer": torch.zeros(1)}
    with pytest.raises(ConfigError, match="already taken steps"):
        prepare_model(model, "fsdp", CPU, optimizer=stepped)
    foreign = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ConfigError, match="not parameters of the model"):
        prepare_model(model, "fsdp", CPU, optimizer=foreign)
    assert not hasattr(model, "reshard")  # nothing was sharded (fully_shard adds FSDPModule's methods)


def _samples(batches: EpochBatches, epoch: int, start: int, steps: int) -> list[set[tuple[int, ...]]]:
    iterator = batches.epoch(epoch, start)
    return [{tuple(row) for row in next(iterator)["input_ids"].tolist()} for _ in range(steps)]


def test_the_data_order_is_the_same_on_any_number_of_processes_with_the_same_global_batch():
    ranks = [EpochBatches(tiny_loaders(4)[0], seed=5, context=DistributedContext(r, 2)) for r in (0, 1)]
    one = EpochBatches(tiny_loaders(8)[0], seed=5, context=DistributedContext())
    consumed = ranks[0].items_consumed(3)  # a checkpoint after 3 steps on 2 ranks
    assert consumed == 24 and one.batches_after(consumed) == 3
    two_ranks = [a | b for a, b in zip(_samples(ranks[0], 1, 3, 4), _samples(ranks[1], 1, 3, 4), strict=True)]
    assert two_ranks == _samples(one, 1, 3, 4)


def test_a_changed_global_batch_continues_at_the_next_batch_skipping_the_rest(tmp_path, caplog):
    first = build_tiny_trainer("simple", batch_size=8, output_dir=tmp_path, max_steps=3, checkpoint_interval=3)
    first.train()
    resumed = build_tiny_trainer("simple", model_seed=1, batch_size=5, output_dir=tmp_path, max_steps=3)
    with caplog.at_level(logging.WARNING):
        resumed.load_checkpoint(tmp_path)
    assert resumed.progress.batch_in_epoch == 5  # item 24 of the order lies inside batch 4 of size 5
    assert "epoch 0 continues at item 25 of its order (1 item(s) skipped: the global batch changed)" in caplog.text


@pytest.mark.slow
def test_a_compiled_model_trains_along_the_eager_curve():
    eager = build_tiny_trainer("simple", model_options={"dropout": 0.0}, max_steps=4)
    compiled = build_tiny_trainer("simple", model_options={"dropout": 0.0}, max_steps=4, compile=True)
    assert compiled.train()["losses"] == pytest.approx(eager.train()["losses"], rel=1e-4)
    assert list(compiled.raw_model.state_dict()) == list(eager.raw_model.state_dict())  # no `_orig_mod.` prefix


def test_fsdp_gathers_the_weights_of_a_bf16_run_in_bf16_and_sums_its_gradients_in_fp32():
    policy = fsdp_precision("auto", "fp32", torch.bfloat16)
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert not policy.cast_forward_inputs  # a block's attention layout is a dataclass FSDP cannot rebuild
    for precision in (None, torch.float16):  # fp32 and fp16 runs gather fp32 weights
        assert fsdp_precision("auto", "fp32", precision).param_dtype is None
    assert fsdp_precision("fp32", "fp32", torch.bfloat16).param_dtype is None
    assert fsdp_precision("auto", "bf16", torch.bfloat16).reduce_dtype == torch.bfloat16
    trainer = build_tiny_trainer("advanced", mixed_precision="bf16", fsdp_reduce_dtype="bf16")
    assert (trainer._fsdp_policy().param_dtype, trainer._fsdp_policy().reduce_dtype) == (torch.bfloat16,) * 2
