"""The built-in optimizers on FSDP2's DTensor shards, two CPU processes (gloo), against the unsharded model.

Both processes feed the same batch, so the gradient FSDP2 averages over them is the whole model's gradient,
bit for bit (x + x halved is x), and any difference comes from the optimizer's step on shards:

- fused AdamW is element-wise: its step on shards is bitwise the unsharded step, over several steps;
- Muon orthogonalises each matrix's update by a Newton-Schulz iteration in bf16; torch.optim.Muon runs it on
  the DTensor, whose matrix products sum each process's partial product in bf16, so the result is the same
  mathematics rounded differently. The stated tolerance: Muon's update on shards differs from the unsharded
  update by less than the unsharded update itself moves when its gradient is rounded by one bf16 step
  (each element scaled by 1 +- 2^-8). The parameters AdamW updates beside Muon's matrices are bitwise the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from two_ranks import on_two_ranks

from cleangpt_core.distributed.process_group import init_distributed
from cleangpt_core.distributed.strategies import full_model_state, prepare_model
from cleangpt_core.testing.trainer import tiny_model
from cleangpt_core.trainers.optim_factory import get_optimizer
from cleangpt_core.trainers.training_checkpoint import read_state, write_state

pytestmark = pytest.mark.slow  # two processes

CPU = torch.device("cpu")
BF16_STEP = 2**-8  # the relative spacing of bf16 numbers near 1


def _steps(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int, rounding_seed: int | None = None
) -> None:
    tokens = torch.randint(0, 17, (4, 16), generator=torch.Generator().manual_seed(0))  # the same on both ranks
    for _ in range(steps):
        model(tokens, labels=tokens)["loss"].backward()
        if rounding_seed is not None:  # each gradient element moved by one bf16 step, up or down
            generator = torch.Generator().manual_seed(rounding_seed)
            for parameter in model.parameters():
                signs = torch.randint(0, 2, parameter.grad.shape, generator=generator) * 2 - 1
                parameter.grad.mul_(1 + BF16_STEP * signs)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _sharded_and_whole(rank: int, name: str, steps: int, out: Path) -> None:
    init_distributed(CPU)
    start = tiny_model(dropout=0.0).state_dict()
    runs = {}
    for run, rounding_seed in (("whole", None), ("rounded", 1), ("sharded", None)):
        model = tiny_model(dropout=0.0)  # the same initial weights each time
        optimizer = get_optimizer(name, model)
        if run == "sharded":
            model = prepare_model(model, "fsdp", CPU, optimizer=optimizer)
            assert type(model.transformer.h[0].attn.c_attn.weight).__name__ == "DTensor"
        _steps(model, optimizer, steps, rounding_seed)
        runs[run] = full_model_state(model) if run == "sharded" else model.state_dict()
    if rank == 0:
        write_state(out, {"start": start, **runs})


def _run(name: str, steps: int, tmp_path: Path) -> dict[str, dict[str, torch.Tensor]]:
    on_two_ranks(_sharded_and_whole, name, steps, tmp_path)
    return read_state(tmp_path)


def test_fused_adamw_steps_on_shards_bitwise_as_on_the_whole_model(tmp_path):
    runs = _run("adamw", 3, tmp_path)
    differing = [name for name, tensor in runs["whole"].items() if not torch.equal(tensor, runs["sharded"][name])]
    assert differing == []
    assert not torch.equal(
        runs["whole"]["transformer.h.0.mlp.c_fc.weight"], runs["start"]["transformer.h.0.mlp.c_fc.weight"]
    )


def test_muon_on_shards_differs_from_the_whole_model_by_less_than_a_bf16_rounding_of_its_gradient(tmp_path):
    runs = _run("muon", 1, tmp_path)
    model = tiny_model()
    matrices = [name for name, parameter in model.named_parameters() if parameter.ndim == 2 and ".h." in name]
    assert matrices, "the tiny model's blocks have hidden matrices for Muon"
    for name, tensor in runs["whole"].items():
        update = tensor - runs["start"][name]
        sharded = (runs["sharded"][name] - runs["start"][name] - update).norm() / update.norm()
        if name in matrices:
            rounded = (runs["rounded"][name] - runs["start"][name] - update).norm() / update.norm()
            assert sharded < rounded, f"{name}: {sharded:.3f} against {rounded:.3f}"
        else:  # embeddings, gains, head: AdamW, element-wise
            assert torch.equal(runs["sharded"][name], tensor), name
