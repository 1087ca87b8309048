"""The built-in optimizers, each built from the roles a model gives its parameters.

Which tensor gets which optimizer and whether it is decayed is the model's to state, not a list of names in
the trainer: `parameter_roles` sorts a model's parameters into hidden matrices, embeddings, an untied output
head and gains (norm gains, biases, scalar gates), and a module that knows better states the roles of its own
parameters with a ``parameter_roles`` mapping. An optimizer component is a function
``build(roles, **options) -> torch.optim.Optimizer``; Muon is two torch optimizers driven as one.

Under muP (`model.parametrization=mup`) the roles carry the width multiplier m, and AdamW and Muon give the
hidden matrices the learning-rate factor `cleangpt_core.model.parametrization.hidden_lr_multiplier` names;
`get_optimizer` refuses muP for an optimizer that does not say it applies it (`applies_mup`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cleangpt_core.errors import ConfigError
from cleangpt_core.model.parametrization import hidden_lr_multiplier, is_mup, width_multiplier

ROLES = ("matrix", "embedding", "head", "gain")


@dataclass
class ParameterRoles:
    """A model's trainable parameters by role; each parameter appears once (tied weights included)."""

    matrices: list[nn.Parameter] = field(default_factory=list)  # linear maps between hidden states
    embeddings: list[nn.Parameter] = field(default_factory=list)  # lookup tables (a tied head is one of them)
    head: list[nn.Parameter] = field(default_factory=list)  # an untied output projection
    gains: list[nn.Parameter] = field(default_factory=list)  # norm gains, biases, scalars: never decayed
    # muP's m = n_embd / mup_base_width (1 at the base width); None under the standard parametrization
    mup_width_multiplier: float | None = None

    def add(self, role: str, parameter: nn.Parameter) -> None:
        """File `parameter` under `role` (one of `ROLES`)."""
        buckets = {"matrix": self.matrices, "embedding": self.embeddings, "head": self.head, "gain": self.gains}
        if role not in buckets:
            raise ValueError(f"unknown parameter role {role!r}; use one of {ROLES}")
        buckets[role].append(parameter)


def parameter_roles(model: nn.Module) -> ParameterRoles:
    """Sort `model`'s trainable parameters by role.

    A module with a ``parameter_roles`` attribute ({parameter name: role}) decides for its own parameters.
    Otherwise: an `nn.Embedding`'s weight is an embedding, the weight of the module named ``lm_head`` the
    head (when it is not tied to an embedding, which is seen first), any other 2-D weight of an `nn.Linear`
    a matrix, and everything else a gain. The model config's parametrization sets `mup_width_multiplier`.
    """
    config = getattr(model, "config", None)
    roles = ParameterRoles(mup_width_multiplier=width_multiplier(config) if is_mup(config) else None)
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        stated: dict[str, str] = dict(getattr(module, "parameter_roles", None) or {})
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen or not parameter.requires_grad:
                continue
            seen.add(id(parameter))
            roles.add(stated.get(name) or _default_role(module_name, module, name, parameter), parameter)
    return roles


def _default_role(module_name: str, module: nn.Module, name: str, parameter: nn.Parameter) -> str:
    if name != "weight":
        return "gain"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.Linear) and parameter.ndim == 2:
        return "head" if module_name.rsplit(".", 1)[-1] == "lm_head" else "matrix"
    return "gain"


def _groups(decayed: Iterable[nn.Parameter], weight_decay: float, gains: Iterable[nn.Parameter]) -> list[dict]:
    groups = [{"params": list(decayed), "weight_decay": weight_decay}, {"params": list(gains), "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def _mup_matrix_group(roles: ParameterRoles, lr: float, weight_decay: float) -> list[dict]:
    """Under muP, the hidden matrices as a group of their own at Adam's muP learning rate (after the first
    group, whose learning rate is the one the trainer logs); under standard, none."""
    if roles.mup_width_multiplier is None or not roles.matrices:
        return []
    factor = hidden_lr_multiplier("adam", roles.mup_width_multiplier)
    return [{"params": list(roles.matrices), "weight_decay": weight_decay, "lr": lr * factor}]


def adamw_groups(roles: ParameterRoles, *, lr: float, weight_decay: float) -> list[dict]:
    """AdamW's parameter groups: matrices, embeddings and head decayed, gains not; under muP the hidden
    matrices a group of their own at lr/m (second, so the first group's rate is the one the trainer logs)."""
    mup_matrices = _mup_matrix_group(roles, lr, weight_decay)
    decayed = (roles.matrices if not mup_matrices else []) + roles.embeddings + roles.head
    groups = _groups(decayed, weight_decay, roles.gains)
    groups[1:1] = mup_matrices
    return groups


def adamw(
    roles: ParameterRoles, *, lr: float, betas: tuple[float, float], eps: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW over `adamw_groups`."""
    groups = adamw_groups(roles, lr=lr, weight_decay=weight_decay)
    # the fused kernel updates every tensor in one pass: a few percent faster per step on CPU and CUDA
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)


adamw.applies_mup = True  # type: ignore[attr-defined]


def sgd(
    roles: ParameterRoles, *, lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD with momentum over everything; matrices, embeddings and head decayed, gains not."""
    groups = _groups(roles.matrices + roles.embeddings + roles.head, weight_decay, roles.gains)
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
    if roles.mup_width_multiplier is not None:  # muP: see `hidden_lr_multiplier` (1 for adjust_lr='original')
        lr *= hidden_lr_multiplier(f"muon_{adjust_lr}", roles.mup_width_multiplier)
    hidden = torch.optim.Muon(
        roles.matrices,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        nesterov=nesterov,
        ns_steps=ns_steps,
        adjust_lr_fn=adjust_lr,
    )
    rest = _groups(roles.embeddings + roles.head, adamw_weight_decay, roles.gains)
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
