"""The maximal-update parametrization (muP; Yang et al. 2022, "Tensor Programs V"): what changes with width.

With m = n_embd / mup_base_width, muP keeps every part's activations and their per-step change the same size
at any width, so a learning rate tuned at the base width holds at the others. At m = 1 it is the standard
parametrization exactly. Everything width-dependent is here, read by the decoder and the optimizers; the parts
state nothing, since the rules follow the parameter roles the optimizers already use
(`cleangpt_core.model.parameter_roles`):

- initialisation: hidden matrices' std x 1/sqrt(m) (variance ~ 1/fan_in); embeddings, gains, biases and the
  output head unchanged;
- the logits are multiplied by 1/m (the output multiplier: with the head's init and Adam learning rate
  unchanged, it is Table 3's head init std ~ 1/fan_in and learning rate ~ 1/fan_in in the form of the
  paper's Table 8 and the `mup` package's MuReadout, and it works for a head tied to the embedding);
- attention scores are scaled by sqrt(d_base)/d_head (1/d_head, times a constant that makes it 1/sqrt(d_head)
  at the base head width d_base) instead of 1/sqrt(d_head);
- learning rates per role: `hidden_lr_multiplier` below; embeddings, head and gains keep theirs;
- the hidden matrices' decoupled weight decay times the inverse of that factor, so the decay per step (lr x wd)
  is the same at every width (`mup.MuAdamW`'s rule: its weight_decay x m where its lr / m);
- Adam's epsilon / m for every parameter: under muP every gradient shrinks as 1/m (the output multiplier scales
  the whole backward pass), and an epsilon held fixed would come to dominate them at large widths.

The derivations are in docs/mup.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

# How an optimizer updates the hidden matrices, which decides how their learning rate must scale with width.
HiddenUpdate = Literal["adam", "muon_original", "muon_match_rms_adamw"]


def is_mup(config: Any) -> bool:
    """Whether `config` (any model config; one without the field is standard) asks for muP."""
    return getattr(config, "parametrization", "standard") == "mup"


def width_multiplier(config: Any) -> float:
    """m = n_embd / mup_base_width under muP; 1 under the standard parametrization."""
    if not is_mup(config):
        return 1.0
    return config.n_embd / config.mup_base_width


def base_head_dim(config: Any) -> int | None:
    """The head width at which muP's attention scale equals 1/sqrt(d_head); None under standard.

    By default the head width the base model has with this head count (mup_base_width / n_head): the head
    count is held as the width grows, so each head widens.
    """
    if not is_mup(config):
        return None
    return config.mup_base_head_dim or config.mup_base_width // config.n_head


def attention_scale(head_dim: int, base: int | None) -> float | None:
    """The attention score scale: None for PyTorch's default 1/sqrt(head_dim) (standard, and muP at its base
    head width, so both compute the very same numbers), else sqrt(base)/head_dim."""
    if base is None or base == head_dim:
        return None
    return base**0.5 / head_dim


def hidden_lr_multiplier(update: HiddenUpdate, multiplier: float) -> float:
    """The factor muP puts on the hidden matrices' learning rate at width multiplier m.

    - Adam (and AdamW): 1/m. Adam's update has entries of size ~lr whatever the width, correlated with the
      input, so its effect on a layer's output grows as fan_in x lr: lr must shrink as 1/fan_in (Table 3).
    - Muon, `adjust_lr='original'`: 1. Its update is orthogonalised (every singular value ~1) and scaled by
      sqrt(max(1, fan_out/fan_in)), a constant when all widths grow together; the spectral condition for
      feature learning (Yang, Simon & Bernstein 2023) asks for an update of spectral norm
      ~ sqrt(fan_out/fan_in), also a constant: nothing to correct.
    - Muon, `adjust_lr='match_rms_adamw'`: 1/sqrt(m). That scaling is 0.2 sqrt(max(fan_out, fan_in)), which
      grows as sqrt(m), so the spectral norm of the update would too.
    """
    return {"adam": 1.0 / multiplier, "muon_original": 1.0, "muon_match_rms_adamw": multiplier**-0.5}[update]


def hidden_weight_decay_multiplier(update: HiddenUpdate, multiplier: float) -> float:
    """The factor muP puts on the hidden matrices' decoupled weight decay: the inverse of their learning-rate
    factor. AdamW and Muon decay a weight by lr x wd per step; with lr scaled by `hidden_lr_multiplier` and wd
    held, the decay would fade as the model widens (1/m for Adam), and a weight decay tuned at the base width
    would not transfer. `mup.MuAdamW` multiplies weight_decay by m where it divides lr by m, for this reason."""
    return 1.0 / hidden_lr_multiplier(update, multiplier)


def adam_eps_multiplier(multiplier: float) -> float:
    """The factor muP puts on Adam's epsilon, for every parameter: 1/m.

    Adam divides a gradient by sqrt(v) + eps, and muP's analysis assumes eps is negligible beside sqrt(v). Under
    muP every gradient's entries shrink as 1/m, because the logits' output multiplier 1/m scales the backward
    signal into the whole network (measured in docs/mup.md: embeddings, gains, hidden matrices and head alike);
    with eps held, the update of the widest models would shrink towards g/eps, and their training lag. Scaling
    eps with the gradients keeps eps/sqrt(v) what it is at the base width (Everett et al. 2024, "Scaling
    Exponents Across Parameterizations and Optimizers", on epsilon underflow)."""
    return 1.0 / multiplier


def scale_hidden_init(matrices: Iterable[nn.Parameter], multiplier: float) -> None:
    """Scale the initial hidden matrices (`parameter_roles`' "matrix") by 1/sqrt(m), after the standard init
    and every part's own `init_weights`, so parts initialise in standard terms and zeros stay zeros."""
    if multiplier == 1.0:
        return
    with torch.no_grad():
        for matrix in matrices:
            matrix.mul_(multiplier**-0.5)
