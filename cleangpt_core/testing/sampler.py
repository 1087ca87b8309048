"""Contract checks for samplers, for a plugin author's test suite::

    from cleangpt_core.testing.sampler import check_sampler_contract

    def test_my_sampler_keeps_the_contract():
        check_sampler_contract(my_sampler, top_k=5, temperature=0.7)

The contract: logits (B, V) in, long token ids (B, 1) out, each id inside the vocabulary and inside the set
the parameters allow (``k``/``top_k``, ``p``/``top_p``, ``min_p``, applied after the temperature, in that
order), the same ids for the same ``generator`` seed, and argmax when the temperature is 0. A broken check
raises AssertionError that states the contract and what the sampler did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cleangpt_core.inference.sampling_strategies import keep_min_p, keep_top_p
from cleangpt_core.registry import load_component

Sampler = Callable[..., torch.Tensor]


def _resolve(sampler: Sampler | str) -> Sampler:
    return load_component("sampler", sampler) if isinstance(sampler, str) else sampler


def _contract_logits(batch_size: int, vocab_size: int, seed: int) -> torch.Tensor:
    # Spread logits (std 3) so that every filter removes a real part of the vocabulary.
    return torch.randn(batch_size, vocab_size, generator=torch.Generator().manual_seed(seed)) * 3.0


def allowed_tokens(logits: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    """Mask (B, V) of the tokens a correct sampler may return for these parameters."""
    temperature = float(params.get("temperature", 1.0))
    if temperature == 0.0:
        return logits == logits.amax(dim=-1, keepdim=True)
    scaled = logits.float() / temperature
    top_k = params.get("top_k", params.get("k"))
    top_p = params.get("top_p", params.get("p"))
    if top_k is not None:
        # Ties at the k-th value may be broken either way, so every token tied with it is allowed.
        kth = torch.topk(scaled, min(int(top_k), scaled.shape[-1])).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if top_p is not None:
        scaled = keep_top_p(scaled, min(float(top_p) + 1e-5, 1.0))  # slack for float rounding at the boundary
    if params.get("min_p") is not None:
        scaled = keep_min_p(scaled, float(params["min_p"]) * (1 - 1e-5))
    return torch.isfinite(scaled)


def check_output_shape(sampler: Sampler | str, batch_size: int = 4, vocab_size: int = 32, **params: Any) -> None:
    """Logits (B, V) give a long tensor (B, 1) of ids in [0, V)."""
    fn = _resolve(sampler)
    out = fn(_contract_logits(batch_size, vocab_size, 0), **params)
    expected = (batch_size, 1)
    assert isinstance(out, torch.Tensor), f"sampler contract: return a tensor of ids; got {type(out).__name__}"
    assert tuple(out.shape) == expected, (
        f"sampler contract: logits (B, V) give ids of shape {expected}; got {tuple(out.shape)}"
    )
    assert out.dtype == torch.long, f"sampler contract: ids are torch.long; got {out.dtype}"
    assert bool(((out >= 0) & (out < vocab_size)).all()), (
        f"sampler contract: ids lie in [0, {vocab_size}); got {out.flatten().tolist()}"
    )


def check_support(
    sampler: Sampler | str, batch_size: int = 4, vocab_size: int = 32, draws: int = 64, seed: int = 0, **params: Any
) -> None:
    """Over many draws, never a token outside the set the parameters allow."""
    fn = _resolve(sampler)
    logits = _contract_logits(batch_size, vocab_size, seed)
    allowed = allowed_tokens(logits, params)
    tiled_logits = logits.repeat_interleave(draws, dim=0)
    generator = torch.Generator().manual_seed(seed)
    chosen = fn(tiled_logits, generator=generator, **params).view(batch_size, draws)
    outside = ~allowed.gather(1, chosen)
    if bool(outside.any()):
        row, column = (int(i) for i in outside.nonzero()[0])
        token = int(chosen[row, column])
        rank = int((logits[row] > logits[row, token]).sum()) + 1
        raise AssertionError(
            f"sampler contract: with {params or 'no parameters'} only the {int(allowed[row].sum())} tokens the "
            f"parameters allow may be returned; the sampler returned token {token}, the {rank}-th most likely"
        )


def check_reproducible(sampler: Sampler | str, batch_size: int = 8, vocab_size: int = 64, **params: Any) -> None:
    """The same generator seed gives the same ids."""
    fn = _resolve(sampler)
    logits = _contract_logits(batch_size, vocab_size, 1)
    first = fn(logits, generator=torch.Generator().manual_seed(123), **params)
    second = fn(logits, generator=torch.Generator().manual_seed(123), **params)
    assert torch.equal(first, second), (
        "sampler contract: the same generator seed gives the same tokens; got "
        f"{first.flatten().tolist()} then {second.flatten().tolist()}"
    )


def check_sampler_contract(sampler: Sampler | str, **params: Any) -> None:
    """Run every sampler check with these parameters."""
    check_output_shape(sampler, **params)
    check_support(sampler, **params)
    check_reproducible(sampler, **params)
