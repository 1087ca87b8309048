"""The sampler contract kit passes every built-in sampler and catches broken ones with a clear message."""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.testing.sampler import check_sampler_contract, check_support

BUILTIN_CASES = [
    ("greedy", {}),
    ("temperature", {"temperature": 0.7}),
    ("temperature", {"temperature": 0.0}),
    ("top_k", {"k": 3}),
    ("top_p", {"p": 0.6, "temperature": 1.3}),
    ("min_p", {"min_p": 0.2}),
    ("combined", {"temperature": 0.8, "top_k": 10, "top_p": 0.9}),
    ("combined", {"top_k": 1}),
]


@pytest.mark.parametrize(("name", "params"), BUILTIN_CASES)
def test_builtin_samplers_keep_the_contract(name, params):
    check_sampler_contract(name, **params)


def sampler_ignoring_top_k(logits, top_k=None, temperature=1.0, generator=None):
    return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)


def sampler_with_wrong_shape(logits, generator=None):
    return logits.argmax(dim=-1)


def sampler_ignoring_generator(logits, generator=None):
    return torch.multinomial(torch.softmax(logits, dim=-1), 1)


def test_contract_catches_a_sampler_that_ignores_top_k():
    expected = r"with \{'top_k': 3\} only the 3 tokens .* returned token \d+, the \d+-th"
    with pytest.raises(AssertionError, match=expected):
        check_support(sampler_ignoring_top_k, top_k=3)


def test_contract_catches_a_wrong_output_shape():
    with pytest.raises(AssertionError, match=r"ids of shape \(4, 1\); got \(4,\)"):
        check_sampler_contract(sampler_with_wrong_shape)


def test_contract_catches_a_sampler_that_ignores_the_generator():
    with pytest.raises(AssertionError, match="same generator seed gives the same tokens"):
        check_sampler_contract(sampler_ignoring_generator)
