"""The logit processors behind OpenAI's penalties and logit_bias: OpenAI's formula, and composition with any
registered sampler, a third-party plugin's included."""

from __future__ import annotations

import torch

from cleangpt_core.inference.logit_processors import Penalties, logit_bias, with_processors
from cleangpt_core.inference.sampling_strategies import get_sampling_fn

ARGMAX_PLUGIN = """
from cleangpt_core.plugin_api import Component, hookimpl

CLEANGPT_PLUGIN_API = "1.0"


def plugin_argmax(logits, *, generator=None):
    return logits.argmax(dim=-1, keepdim=True)


@hookimpl
def cleangpt_register_samplers():
    return [Component(name="plugin_argmax", kind="sampler", summary="argmax, from a plugin",
                      target=__name__ + ":plugin_argmax")]
"""


def test_penalties_follow_openais_formula_over_the_tokens_generated():
    penalties = Penalties(5, presence=0.5, frequency=0.25, device=torch.device("cpu"))
    for token in (1, 1, 3):
        penalties.observe(token)
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    # token 1 seen twice: 2 - 2 * 0.25 - 0.5; token 3 once: 4 - 0.25 - 0.5
    assert penalties(logits).tolist() == [[1.0, 1.0, 3.0, 3.25, 5.0]]


def test_a_bias_forces_or_bans_a_token_under_a_plugins_sampler(install_plugin):
    install_plugin("cleangpt-argmax", ARGMAX_PLUGIN)
    sampler = get_sampling_fn("plugin_argmax")
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 1.0, 0.0]])
    forced = with_processors(sampler, [logit_bias({2: 100.0}, 4, torch.device("cpu"))])
    assert forced(logits).tolist() == [[2], [2]]
    banned = with_processors(sampler, [logit_bias({1: -100.0, 0: -100.0}, 4, torch.device("cpu"))])
    assert banned(logits).tolist() == [[3], [2]]


def test_no_processors_leave_the_sampler_itself():
    sampler = get_sampling_fn("greedy")
    assert with_processors(sampler, []) is sampler
