"""The built-in optimizers, each built from the roles a model gives its parameters.

Which tensor gets which optimizer and whether it is decayed is the model's to state, not a list of names in
the trainer: `cleangpt_core.model.parameter_roles` sorts a model's parameters into hidden matrices, embeddings,
an untied output head and gains (this module re-exports `ParameterRoles` and `parameter_roles`, where optimizer
plugins have always imported them). An optimizer component is a function
``build(roles, **options) -> torch.optim.Optimizer``; Muon is two torch optimizers driven as one.

Under muP (`model.parametrization=mup`) the roles carry the width multiplier m, and AdamW and Muon give the
hidden matrices the learning-rate factor `cleangpt_core.model.parametrization.hidden_lr_multiplier` names and
the inverse factor on their weight decay, and every AdamW group its epsilon / m;
`get_optimizer` refuses muP for an optimizer that does not say it applies it (`applies_mup`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from cleangpt_core.errors import ConfigError
from cleangpt_core.model.parameter_roles import (
    ParameterRoles,
    adamw_groups,
    decay_groups,
    parameter_roles,
    with_mup_eps,
)
from cleangpt_core.model.parametrization import hidden_lr_multiplier, hidden_weight_decay_multiplier

__all__ = ["CombinedOptimizer", "ParameterRoles", "adamw", "adamw_groups", "muon", "parameter_roles", "sgd"]

def adamw(
    roles: ParameterRoles, *, lr: float, betas: tuple[float, float], eps: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW over `adamw_groups` (under muP: the hidden matrices' lr and weight decay, every group's eps)."""
    groups = adamw_groups(roles, lr=lr, weight_decay=weight_decay, eps=eps)
    # the fused kernel updates every tensor in one pass: a few percent faster per step on CPU and CUDA
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)


adamw.applies_mup = True  # type: ignore[attr-defined]


def sgd(
    roles: ParameterRoles, *, lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD with momentum over everything; matrices, embeddings and head decayed, gains not."""
    groups = decay_groups(roles.matrices + roles.embeddings + roles.head, weight_decay, roles.gains)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


def muon(
    roles: ParameterRoles,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    ns_steps: int,
    weight_decay: float,
    adjust_lr: str,
    adamw_lr: float,
    adamw_betas: tuple[float, float],
    adamw_eps: float,
    adamw_weight_decay: float,
) -> torch.optim.Optimizer:
    """`torch.optim.Muon` for the hidden matrices and AdamW for embeddings, head and gains (modded-nanogpt)."""
    if not roles.matrices:
        raise ConfigError("optimizer 'muon': the model has no hidden weight matrices for Muon; use adamw")
    if not hasattr(torch.optim, "Muon"):  # the one feature above the declared floor (torch>=2.6)
        raise ConfigError(
            f"optimizer 'muon' needs torch>=2.9 (torch.optim.Muon) and this is torch {torch.__version__}; "
            "upgrade torch or use adamw"
        )
    if roles.mup_width_multiplier is not None:  # muP: 1 and 1 for adjust_lr='original' (`hidden_lr_multiplier`)
        lr *= hidden_lr_multiplier(f"muon_{adjust_lr}", roles.mup_width_multiplier)
        weight_decay *= hidden_weight_decay_multiplier(f"muon_{adjust_lr}", roles.mup_width_multiplier)
    hidden = torch.optim.Muon(
        roles.matrices,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        nesterov=nesterov,
        ns_steps=ns_steps,
        adjust_lr_fn=adjust_lr,
    )
    rest = with_mup_eps(decay_groups(roles.embeddings + roles.head, adamw_weight_decay, roles.gains), roles, adamw_eps)
    if not rest:
        return hidden
    return CombinedOptimizer(
        [hidden, torch.optim.AdamW(rest, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps, fused=True)]
    )


muon.applies_mup = True  # type: ignore[attr-defined]


class CombinedOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped, zeroed, scheduled and saved as one.

    Its ``param_groups`` are the children's own group dicts and its ``state`` the one mapping every child
    keeps its per-parameter state in, so a learning-rate scheduler scales each child's groups from that
    group's own peak, and torch's ``state_dict`` (and distributed checkpointing, which reads ``state`` to tell
    whether the optimizer has stepped) see one ordinary optimizer.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        super().__init__([p for opt in self.optimizers for group in opt.param_groups for p in group["params"]], {})
        self.param_groups = [group for opt in self.optimizers for group in opt.param_groups]
        self._share_with_children()

    def _share_with_children(self) -> None:
        """Give each child its run of `param_groups`, in order, and the one `state` mapping."""
        groups = iter(self.param_groups)
        for optimizer in self.optimizers:
            optimizer.param_groups = [next(groups) for _ in range(len(optimizer.param_groups))]
            optimizer.state = self.state  # the parameters are disjoint, so one mapping holds every child's state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of every child optimizer (the closure, if any, is evaluated once)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every child's gradients."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state torch's ``state_dict`` saved, then hand the restored groups and state to the children.

        torch refuses a state whose groups or parameters do not match this combination's.
        """
        super().load_state_dict(state_dict)
        self._share_with_children()
