"""What a model declares for its optimizers: each trainable parameter's role, and AdamW's groups by role.

Which tensor gets which optimizer, and whether it is decayed, is the model's to state, not a list of names in
the trainer: `parameter_roles` sorts a model's parameters into hidden matrices, embeddings, an untied output
head and gains (norm gains, biases, scalar gates), and a module that knows better states the roles of its own
parameters with a ``parameter_roles`` mapping. Under muP the roles carry the width multiplier m, and the
hidden matrices train at the learning rate and weight decay `cleangpt_core.model.parametrization` gives them,
every group with its epsilon scaled. The
optimizers (`cleangpt_core.trainers.optimizers`) and `CausalLanguageModel.optimizer_groups` read these.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn

from cleangpt_core.model.parametrization import (
    adam_eps_multiplier,
    hidden_lr_multiplier,
    hidden_weight_decay_multiplier,
    is_mup,
    width_multiplier,
)

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


def decay_groups(decayed: Iterable[nn.Parameter], weight_decay: float, gains: Iterable[nn.Parameter]) -> list[dict]:
    """Two parameter groups, `decayed` at `weight_decay` and `gains` at none (an empty group left out)."""
    groups = [{"params": list(decayed), "weight_decay": weight_decay}, {"params": list(gains), "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def _mup_matrix_group(roles: ParameterRoles, lr: float, weight_decay: float) -> list[dict]:
    """Under muP, the hidden matrices as a group of their own at Adam's muP learning rate and weight decay
    (after the first group, whose learning rate is the one the trainer logs); under standard, none."""
    if roles.mup_width_multiplier is None or not roles.matrices:
        return []
    m = roles.mup_width_multiplier
    return [
        {
            "params": list(roles.matrices),
            "weight_decay": weight_decay * hidden_weight_decay_multiplier("adam", m),
            "lr": lr * hidden_lr_multiplier("adam", m),
        }
    ]


def adamw_groups(roles: ParameterRoles, *, lr: float, weight_decay: float, eps: float | None = None) -> list[dict]:
    """AdamW's parameter groups: matrices, embeddings and head decayed, gains not.

    Under muP the hidden matrices are a group of their own at lr/m and weight decay x m (second, so the first
    group's rate is the one the trainer logs), and with `eps` given every group carries its own epsilon, eps/m
    (`cleangpt_core.model.parametrization`); without it the optimizer's epsilon applies unscaled."""
    mup_matrices = _mup_matrix_group(roles, lr, weight_decay)
    decayed = (roles.matrices if not mup_matrices else []) + roles.embeddings + roles.head
    groups = decay_groups(decayed, weight_decay, roles.gains)
    groups[1:1] = mup_matrices
    return with_mup_eps(groups, roles, eps)


def with_mup_eps(groups: list[dict], roles: ParameterRoles, eps: float | None) -> list[dict]:
    """`groups`, each with muP's epsilon (eps/m) under muP when `eps` is given; unchanged otherwise."""
    if roles.mup_width_multiplier is None or eps is None:
        return groups
    scaled = eps * adam_eps_multiplier(roles.mup_width_multiplier)
    return [{**group, "eps": scaled} for group in groups]
