"""The built-in optimizers against their definitions: parameter roles, AdamW's groups, Muon's orthogonal update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cleangpt_core.errors import ConfigError
from cleangpt_core.model import get_model
from cleangpt_core.trainers.optimizers import CombinedOptimizer, adamw, muon, parameter_roles, sgd
from cleangpt_core.trainers.schedules import wsd_schedule
from cleangpt_core.trainers.training_checkpoint import flatten_state, unflatten_state

MUON = {
    "lr": 0.02,
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 5,
    "weight_decay": 0.0,
    "adjust_lr": "original",
    "adamw_lr": 3e-3,
    "adamw_betas": (0.9, 0.99),
    "adamw_eps": 1e-8,
    "adamw_weight_decay": 0.0,
}


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return get_model("Vanilla", vocab_size=32, n_layer=2, n_head=2, n_embd=16, block_size=8)


def loss_step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 32, (4, 8), generator=generator)
    optimizer.zero_grad()
    model(input_ids=ids, labels=ids)["loss"].backward()
    optimizer.step()


def test_roles_sort_matrices_embeddings_and_gains_with_a_tied_head_counted_once():
    model = tiny_model()
    roles = parameter_roles(model)
    names = {id(p): name for name, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in roles.embeddings) == ["transformer.wpe.weight", "transformer.wte.weight"]
    assert roles.head == []  # tied to wte
    assert all(p.ndim == 2 for p in roles.matrices) and len(roles.matrices) == 2 * 4
    assert all(p.ndim == 1 for p in roles.gains)
    total = sum(len(group) for group in (roles.matrices, roles.embeddings, roles.head, roles.gains))
    assert total == len(list(model.parameters()))


def test_an_untied_head_is_the_head_and_a_module_can_state_its_own_roles():
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(4, 4)
            self.inner.parameter_roles = {"weight": "gain"}
            self.lm_head = nn.Linear(4, 10, bias=False)

    model = Model()
    roles = parameter_roles(model)
    assert roles.head == [model.lm_head.weight]
    assert roles.gains == [model.inner.weight, model.inner.bias]
    assert roles.matrices == []


def test_an_unknown_role_is_refused_by_name():
    model = nn.Linear(2, 2)
    model.parameter_roles = {"weight": "matrixx"}
    with pytest.raises(ValueError, match="matrixx"):
        parameter_roles(model)


def test_adamw_decays_matrices_and_embeddings_but_not_gains():
    model = tiny_model()
    optimizer = adamw(parameter_roles(model), lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])


def test_sgd_uses_nesterov_momentum():
    model = tiny_model()
    optimizer = sgd(parameter_roles(model), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)
    assert all(group["nesterov"] and group["momentum"] == 0.9 for group in optimizer.param_groups)


def _spread_gradient(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """A gradient whose singular values span two orders of magnitude."""
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=generator))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=generator))
    rank = min(shape)
    s = torch.logspace(0, -2, rank)
    return u[:, :rank] @ torch.diag(s) @ v[:, :rank].T


def newton_schulz(gradient: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Muon's orthogonalisation as Jordan et al. define it: the quintic iteration on G / ||G||_F, in bfloat16."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = gradient.bfloat16()
    x = x / x.norm()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def test_muon_orthogonalises_the_update_of_every_hidden_matrix():
    model = tiny_model()
    roles = parameter_roles(model)
    optimizer = muon(roles, **MUON)
    generator = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = (
            _spread_gradient(tuple(p.shape), generator) if p.ndim == 2 else torch.randn(p.shape, generator=generator)
        )
    before = {id(p): (p.detach().clone(), p.grad.clone()) for p in roles.matrices}
    optimizer.step()
    for p in roles.matrices:
        weight, gradient = before[id(p)]
        rows, cols = p.shape
        scale = MUON["lr"] * max(1.0, rows / cols) ** 0.5  # torch's "original" learning-rate adjustment
        update = (weight - p.detach()) / scale
        # the first Nesterov step's direction is the gradient itself, up to a scale the normalisation removes
        # (both run the five steps in bfloat16, whose rounding they amplify: they agree to a few percent)
        reference = newton_schulz(gradient).float()
        assert (update - reference).norm() / reference.norm() < 0.1
        singular = torch.linalg.svdvals(update)
        # singular values spread over 1 to 0.01 in the gradient come out within about [0.7, 1.2]
        assert singular.min() > 0.6 and singular.max() < 1.25, singular


def test_muon_leaves_embeddings_and_gains_to_adamw():
    model = tiny_model()
    reference = tiny_model()
    roles, reference_roles = parameter_roles(model), parameter_roles(reference)
    optimizer = muon(roles, **MUON)
    others = reference_roles.embeddings + reference_roles.gains
    reference_adamw = torch.optim.AdamW(
        others, lr=MUON["adamw_lr"], betas=MUON["adamw_betas"], weight_decay=0.0, fused=True
    )
    for step in range(3):
        loss_step(model, optimizer, seed=step)
        loss_step(reference, reference_adamw, seed=step)
        # the reference only trains the non-matrices; keep its matrices equal to the Muon-trained model's
        with torch.no_grad():
            for mine, theirs in zip(roles.matrices, reference_roles.matrices, strict=True):
                theirs.copy_(mine)
    for mine, theirs in zip(roles.embeddings + roles.gains, others, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_muon_without_hidden_matrices_is_refused():
    model = nn.Embedding(10, 4)
    with pytest.raises(ConfigError, match="muon"):
        muon(parameter_roles(model), **MUON)


def test_a_scheduler_scales_each_child_from_its_own_peak():
    model = tiny_model()
    optimizer = muon(parameter_roles(model), **MUON)
    scheduler = wsd_schedule(optimizer, total_steps=10, decay_fraction=0.5)
    for _ in range(8):
        optimizer.step()
        scheduler.step()
    muon_lr, adamw_lr = (opt.param_groups[0]["lr"] for opt in optimizer.optimizers)
    assert muon_lr == pytest.approx(MUON["lr"] * 0.4) and adamw_lr == pytest.approx(MUON["adamw_lr"] * 0.4)


def test_combined_state_survives_a_checkpoint_round_trip_bitwise():
    model, resumed = tiny_model(), tiny_model()
    optimizer = muon(parameter_roles(model), **MUON)
    for step in range(3):
        loss_step(model, optimizer, seed=step)
    structure, tensors = flatten_state(optimizer.state_dict(), "optimizer")
    resumed.load_state_dict(model.state_dict())
    restored = muon(parameter_roles(resumed), **MUON)
    restored.load_state_dict(unflatten_state(structure, tensors))
    for step in range(3, 5):
        loss_step(model, optimizer, seed=step)
        loss_step(resumed, restored, seed=step)
    for mine, theirs in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_combined_refuses_a_state_from_another_combination():
    model = tiny_model()
    optimizer = muon(parameter_roles(model), **MUON)
    assert isinstance(optimizer, CombinedOptimizer)
    with pytest.raises(ValueError, match="parameter groups"):
        optimizer.load_state_dict(optimizer.optimizers[0].state_dict())
