"""The part contract as reusable checks: one line in a part plugin's tests runs them all.

    from cleangpt_core.testing.parts import check_part_contract

    def test_my_attention_keeps_the_contract():
        check_part_contract("attention", "my_attention", window=4)

A part (attention, feedforward, norm, position, residual) is checked where it lives: swapped into each preset
of the decoder (`Vanilla`, `Llama`; an attention part also under every built-in position encoding). First what
only a part can get wrong: its output has its input's shape, no part mixes the rows of a batch, a feed-forward
or norm acts on each position alone, and every parameter gets a gradient (an unused one breaks
DistributedDataParallel). Then each model so made must keep the whole architecture contract
(`cleangpt_core.testing.architecture`: causality, cache = recomputation with left padding, save/load, seeded
determinism...). A check raises `AssertionError` naming the part, the model it was in, the contract and what
the part did; a part whose `residual_projections` names no layer of it fails to build, naming the layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cleangpt_core.model.factory import PartClasses, resolve_parts
from cleangpt_core.model.kv_cache import begin_forward
from cleangpt_core.plugin_api import PART_KINDS
from cleangpt_core.registry import get_component
from cleangpt_core.testing.architecture import (
    SMALL_MODEL,
    ModelFactory,
    check_architecture_contract,
    perturb_parameters,
    registered_model_factory,
)

PRESETS = ("Vanilla", "Llama")
# An attention part must work with every way positions reach it: added to the embeddings, rotating q and k,
# as a score bias, and not at all.
POSITIONS = ("learned", "rotary", "alibi", "none")
# Kinds whose parts see one position at a time: changing one position's input changes only its output.
POSITION_WISE = ("feedforward", "norm")


def part_model_factory(kind: str, name: str, preset: str = "Vanilla", **options: Any) -> ModelFactory:
    """A factory of small `preset` models with the part `name` of `kind` in place, given `options` (its section)."""
    model_options = {key: options.pop(key) for key in list(options) if key in PART_KINDS and key != kind}
    return registered_model_factory(preset, **model_options, **{kind: {"name": name, **options}})


def check_part_contract(kind: str, name: str, *, presets: Sequence[str] = PRESETS, **options: Any) -> None:
    """Run every check of the part contract on the registered part `name` of `kind`, built with `options`.

    Another part of the models it is checked in may be named too (``position="rotary"`` for a feed-forward
    part that needs it); an attention part is checked under each of `POSITIONS` unless a position is named.
    """
    if kind not in PART_KINDS:
        raise ValueError(f"kind must be one of {PART_KINDS}, got {kind!r}")
    get_component(kind, name)  # an unknown name fails here, listing the registered parts of the kind
    positions = [options.pop("position")] if kind != "position" and "position" in options else None
    if positions is None and kind == "attention":
        positions = list(POSITIONS)
    for preset in presets:
        for position in positions or [None]:
            extra = {} if position is None else {"position": position}
            factory = part_model_factory(kind, name, preset, **extra, **options)
            where = f"{kind} {name!r} in {preset}" + (f" with position={position}" if position else "")
            try:  # the part alone first, whose failures say the most precisely what is wrong
                torch.manual_seed(0)
                model = perturb_parameters(factory(), seed=0).eval()
                check_part_shapes_and_rows(model, kind)
                if kind in POSITION_WISE:
                    check_acts_on_each_position_alone(model, kind)
                check_every_parameter_learns(model)
                check_architecture_contract(factory)
            except AssertionError as error:
                raise AssertionError(f"{where}: {error}") from None


def _part(model: nn.Module, kind: str, parts: PartClasses) -> nn.Module:
    """A new instance of the model's `kind` part, built as the decoder builds it, with seeded random weights."""
    config = model.config
    builders = {
        "attention": lambda: parts.attention(config, 0),
        "feedforward": lambda: parts.feedforward(config),
        "norm": lambda: parts.norm(config),
        "position": lambda: parts.position(config),
        "residual": lambda: parts.residual(config, 0, parts),
    }
    torch.manual_seed(1)
    return perturb_parameters(builders[kind](), seed=1).eval()


def _apply(part: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    """The part's output on hidden states `x` (B, T, n_embd), called as the decoder calls its kind."""
    ids = torch.zeros(x.shape[:2], dtype=torch.long)
    layout = begin_forward(ids, None, None)
    with torch.no_grad():
        if kind == "position":
            result = part(x, layout)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise AssertionError(
                    f"a position part returns (x, layout), got {type(result).__name__}; return the layout too"
                )
            return result[0]
        if kind in ("attention", "residual"):
            return part(x, layout, None)
        return part(x)


def check_part_shapes_and_rows(model: nn.Module, kind: str) -> None:
    """The part maps (B, T, n_embd) to (B, T, n_embd), and each row of a batch gets what it gets alone."""
    part = _part(model, kind, resolve_parts(model.config))
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(3, SMALL_MODEL["block_size"], model.config.n_embd, generator=generator)
    y = _apply(part, kind, x)
    if tuple(y.shape) != tuple(x.shape):
        raise AssertionError(f"the part must keep the shape (B, T, n_embd) = {tuple(x.shape)}, got {tuple(y.shape)}")
    for row in range(x.size(0)):
        alone = _apply(part, kind, x[row : row + 1])
        if not torch.allclose(alone, y[row : row + 1], atol=1e-5, rtol=1e-5):
            raise AssertionError(
                f"rows of a batch must not mix: row {row} alone gives another output than in the batch "
                f"(largest difference {(alone - y[row : row + 1]).abs().max().item():.3g}); a norm over the batch "
                "(BatchNorm) or a reduction over dim 0 does this"
            )


def check_acts_on_each_position_alone(model: nn.Module, kind: str) -> None:
    """A feed-forward or norm part changes a position's output only when that position's input changes."""
    part = _part(model, kind, resolve_parts(model.config))
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(2, SMALL_MODEL["block_size"], model.config.n_embd, generator=generator)
    changed_at = x.size(1) // 2
    altered = x.clone()
    altered[:, changed_at] += torch.randn(altered[:, changed_at].shape, generator=generator)
    difference = (_apply(part, kind, altered) - _apply(part, kind, x)).abs().amax(dim=(0, 2))
    others = torch.cat([difference[:changed_at], difference[changed_at + 1 :]])
    if bool((others > 1e-6).any()):
        moved = [t for t in range(x.size(1)) if t != changed_at and difference[t] > 1e-6]
        raise AssertionError(
            f"a {kind} part acts on each position alone: changing position {changed_at} changed positions "
            f"{moved[:5]} too; mixing positions is attention's job (and breaks causality or the cache)"
        )


def check_every_parameter_learns(model: nn.Module) -> None:
    """Every trainable parameter gets a finite gradient from the loss: an unused one wastes optimizer state,
    and DistributedDataParallel fails on it."""
    model.train()
    model.zero_grad(set_to_none=True)
    generator = torch.Generator().manual_seed(13)
    tokens = torch.randint(0, model.config.vocab_size, (2, model.config.block_size), generator=generator)
    model(tokens, labels=tokens)["loss"].backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if unused:
        raise AssertionError(f"every parameter must take part in the forward pass; no gradient reached {unused[:5]}")
    broken = [name for name, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()]
    if broken:
        raise AssertionError(f"gradients must be finite; {broken[:5]} got inf or NaN")
    model.zero_grad(set_to_none=True)
    model.eval()
