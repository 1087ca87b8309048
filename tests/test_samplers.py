"""The built-in samplers: support, greedy, the temperature distribution, validation and reproducibility."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cleangpt_core.errors import ConfigError
from cleangpt_core.inference.sampling_strategies import (
    combined_sampling,
    get_sampling_fn,
    greedy_sampling,
    min_p_sampling,
    temperature_sampling,
    top_k_sampling,
    top_p_sampling,
)

# Rows of logits: 1-4 rows over a vocabulary of 2-40 tokens, values spread enough to make filters bite.
logit_rows = st.integers(min_value=2, max_value=40).flatmap(
    lambda vocab: st.lists(
        st.lists(st.floats(-8.0, 8.0, allow_nan=False, width=32), min_size=vocab, max_size=vocab),
        min_size=1,
        max_size=4,
    )
)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
property_settings = settings(max_examples=60, deadline=None)


def draws(sampler, logits: torch.Tensor, seed: int, repeats: int = 16, **params) -> torch.Tensor:
    """Sample `repeats` times from each row at once (rows tiled), so support checks see many draws."""
    generator = torch.Generator().manual_seed(seed)
    tiled = logits.repeat_interleave(repeats, dim=0)
    return sampler(tiled, generator=generator, **params).view(logits.shape[0], repeats)


@given(rows=logit_rows, k=st.integers(1, 10), seed=seeds)
@property_settings
def test_top_k_never_returns_a_token_outside_the_k_largest(rows, k, seed):
    logits = torch.tensor(rows)
    kth_largest = torch.topk(logits, min(k, logits.shape[1])).values[:, -1:]
    chosen = draws(top_k_sampling, logits, seed, k=k)
    assert bool((logits.gather(1, chosen) >= kth_largest).all())


def nucleus(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Mask of the smallest set of most likely tokens whose probability reaches p (ties all included)."""
    sorted_probs, _ = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    last = (cumulative < p).sum(dim=-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    return probs >= sorted_probs.gather(-1, last)


@given(rows=logit_rows, p=st.floats(0.05, 1.0), seed=seeds, temperature=st.sampled_from([0.5, 1.0, 1.7]))
@property_settings
def test_top_p_never_returns_a_token_outside_the_smallest_set_reaching_p(rows, p, seed, temperature):
    logits = torch.tensor(rows, dtype=torch.float64)
    probs = torch.softmax(logits / temperature, dim=-1)
    allowed = nucleus(probs, min(p + 1e-5, 1.0))  # slack for float32 rounding at the boundary
    chosen = draws(top_p_sampling, logits.float(), seed, p=p, temperature=temperature)
    assert bool(allowed.gather(1, chosen).all())


@given(rows=logit_rows, min_p=st.floats(0.01, 1.0), seed=seeds)
@property_settings
def test_min_p_keeps_only_tokens_at_least_min_p_times_the_best(rows, min_p, seed):
    logits = torch.tensor(rows, dtype=torch.float64)
    probs = torch.softmax(logits, dim=-1)
    allowed = probs >= min_p * probs.amax(dim=-1, keepdim=True) * (1 - 1e-5)
    chosen = draws(min_p_sampling, logits.float(), seed, min_p=min_p)
    assert bool(allowed.gather(1, chosen).all())


@given(rows=logit_rows)
@property_settings
def test_greedy_is_argmax(rows):
    logits = torch.tensor(rows)
    assert torch.equal(greedy_sampling(logits), logits.argmax(dim=-1, keepdim=True))


@given(rows=logit_rows, seed=seeds)
@property_settings
def test_temperature_zero_means_greedy_for_every_sampler(rows, seed):
    logits = torch.tensor(rows)
    expected = logits.argmax(dim=-1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    assert torch.equal(temperature_sampling(logits, temperature=0.0, generator=generator), expected)
    assert torch.equal(top_k_sampling(logits, k=3, temperature=0.0), expected)
    assert torch.equal(top_p_sampling(logits, p=0.5, temperature=0.0), expected)
    assert torch.equal(combined_sampling(logits, temperature=0.0, top_k=5, top_p=0.9), expected)


@given(rows=logit_rows, seed=seeds, tiny=st.sampled_from([1e-300, 1e-40, 1e-6]))
@property_settings
def test_a_temperature_or_top_p_too_small_to_divide_by_is_greedy_not_nan(rows, seed, tiny):
    logits = torch.tensor(rows)
    expected = logits.argmax(dim=-1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    assert torch.equal(temperature_sampling(logits, temperature=tiny, generator=generator), expected)
    assert torch.equal(top_k_sampling(logits, k=3, temperature=tiny, generator=generator), expected)
    assert torch.equal(top_p_sampling(logits, p=tiny, generator=generator), expected)
    assert torch.equal(min_p_sampling(logits, min_p=0.5, temperature=tiny, generator=generator), expected)
    assert torch.equal(combined_sampling(logits, top_p=tiny, generator=generator), expected)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_sampling_matches_softmax_of_scaled_logits(temperature):
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, 0.25]])
    draws_count = 40_000
    generator = torch.Generator().manual_seed(1234)
    samples = temperature_sampling(logits.expand(draws_count, -1), temperature=temperature, generator=generator)
    observed = torch.bincount(samples.flatten(), minlength=logits.shape[1]).double()
    expected = torch.softmax(logits[0].double() / temperature, dim=-1) * draws_count
    chi_square = float(((observed - expected) ** 2 / expected).sum())
    # 7 degrees of freedom: P(chi2 > 24.32) = 0.001, so a correct sampler fails this 1 time in 1000 seeds.
    assert chi_square < 24.32


def test_samplers_return_one_token_per_row_as_long():
    logits = torch.randn(5, 11, generator=torch.Generator().manual_seed(0))
    for name in ["greedy", "temperature", "top_k", "top_p", "min_p", "combined"]:
        out = get_sampling_fn(name)(logits)
        assert out.shape == (5, 1)
        assert out.dtype == torch.long


def test_rows_are_sampled_independently():
    logits = torch.full((3, 6), -30.0)
    logits[0, 1] = logits[1, 4] = logits[2, 0] = 30.0
    assert combined_sampling(logits, temperature=1.0, top_k=2).flatten().tolist() == [1, 4, 0]


def test_same_generator_seed_gives_the_same_tokens():
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(0))
    first = combined_sampling(logits, top_k=20, top_p=0.9, generator=torch.Generator().manual_seed(7))
    second = combined_sampling(logits, top_k=20, top_p=0.9, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def test_top_k_larger_than_the_vocabulary_keeps_everything():
    logits = torch.zeros(1, 3)
    seen = set(draws(top_k_sampling, logits, 0, repeats=200, k=10).flatten().tolist())
    assert seen == {0, 1, 2}


def test_combined_applies_top_k_before_top_p():
    # Four equally likely tokens, then top_k=2 leaves two at 0.5 each; top_p=0.5 then keeps just one of them.
    logits = torch.tensor([[1.0, 1.0, 1.0, 1.0, -9.0]])
    chosen = set(draws(combined_sampling, logits, 0, repeats=300, top_k=2, top_p=0.5).flatten().tolist())
    assert len(chosen) == 1


def test_bfloat16_logits_are_sampled():
    logits = torch.randn(2, 30).to(torch.bfloat16)
    assert top_p_sampling(logits, p=0.8).shape == (2, 1)


@pytest.mark.parametrize(
    ("sampler", "params", "message"),
    [
        (top_p_sampling, {"p": 0.0}, "p=0.0"),
        (top_p_sampling, {"p": 1.5}, "p=1.5"),
        (top_k_sampling, {"k": 0}, "k=0"),
        (temperature_sampling, {"temperature": -0.1}, "temperature=-0.1"),
        (temperature_sampling, {"temperature": math.inf}, "temperature=inf"),
        (combined_sampling, {"top_k": -3}, "top_k=-3"),
        (combined_sampling, {"top_p": 2.0}, "top_p=2.0"),
        (min_p_sampling, {"min_p": 0.0}, "min_p=0.0"),
    ],
)
def test_invalid_parameters_raise_a_clear_error(sampler, params, message):
    with pytest.raises(ConfigError, match=message):
        sampler(torch.zeros(1, 4), **params)


def test_logits_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match=r"shape \(batch, vocab\)"):
        greedy_sampling(torch.zeros(2, 3, 4))


def test_tutorial_custom_loop_call_works():
    top_p = get_sampling_fn("top_p")
    next_token = top_p(torch.randn(1, 9), p=0.9, temperature=0.8)
    assert next_token.shape == (1, 1)
