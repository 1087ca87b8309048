"""The part contract over every built-in part (`cleangpt_core.testing.parts`: the architecture contract in each
preset, an attention part under each position encoding, shapes, rows of a batch kept apart, per-position parts,
a gradient for every parameter), each preset with each position encoding and attention option, and the kit
catching what only a part can get wrong."""

from __future__ import annotations

import pytest

from cleangpt_core.errors import ConfigError
from cleangpt_core.model import get_model
from cleangpt_core.plugin_api import PART_KINDS
from cleangpt_core.registry import BUILTIN_DISTRIBUTION, get_registry
from cleangpt_core.testing.architecture import check_architecture_contract, registered_model_factory
from cleangpt_core.testing.parts import check_part_contract

PRESETS = ("Vanilla", "Llama")
BUILTIN_PARTS = [
    (kind, component.name)
    for kind in PART_KINDS
    for component in get_registry().components(kind)
    if component.distribution == BUILTIN_DISTRIBUTION
]
POSITIONS = [name for kind, name in BUILTIN_PARTS if kind == "position"]


@pytest.mark.parametrize(("kind", "part"), BUILTIN_PARTS)
def test_every_built_in_part_keeps_the_part_contract(kind, part):
    check_part_contract(kind, part)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize(
    "attention", [{"n_kv_head": 1}, {"qk_norm": True, "dropout": 0.1}, {"qkv_bias": True, "residual": "parallel"}]
)
def test_attention_options_keep_the_contract_with_each_position_encoding(preset, position, attention):
    check_architecture_contract(registered_model_factory(preset, position=position, **attention))


def test_every_kind_has_built_in_parts_that_the_contract_covers():
    assert {kind for kind, _ in BUILTIN_PARTS} == set(PART_KINDS)
    assert set(POSITIONS) == {"learned", "rotary", "alibi", "none"}


def test_an_unknown_part_names_the_nearest_and_lists_what_exists():
    with pytest.raises(ConfigError, match=r"unknown position 'alibl'; did you mean 'alibi'\? Available: .*rotary"):
        get_model("Llama", position="alibl")


def test_a_bad_part_option_is_one_line_naming_it():
    with pytest.raises(ConfigError, match="n_kv_head=3 does not divide n_head=4") as error:
        get_model("Llama", n_head=4, n_embd=64, n_kv_head=3)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="rope_base=-1.0"):
        get_model("Llama", rope_base=-1.0)


def test_an_option_of_a_part_not_chosen_is_refused_with_the_nearest_valid_field():
    with pytest.raises(ConfigError, match="unknown field 'rope_base'"):
        get_model("Vanilla", rope_base=500000.0)
    with pytest.raises(ConfigError, match="did you mean 'n_kv_head'"):
        get_model("Llama", n_kv_heads=2)


def test_a_part_is_matched_by_alias_and_stored_under_its_name():
    model = get_model("Vanilla", position="RoPE", norm="rms", vocab_size=11, n_layer=1, n_head=2, n_embd=8)
    assert (model.config.position, model.config.norm) == ("rotary", "rmsnorm")


# -- the kit catches what the architecture contract alone does not ------------------------------------------

BROKEN_PARTS = """
import torch
from torch import nn

from cleangpt_core.plugin_api import Component, hookimpl

CLEANGPT_PLUGIN_API = "1.1"


class MixingMLP(nn.Module):
    \"\"\"A feed-forward part that adds the running mean of the positions before: causal, cached alike, wrong.\"\"\"

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        steps = torch.arange(1, x.size(1) + 1, device=x.device).view(1, -1, 1)
        return self.c_fc(x.cumsum(dim=1) / steps)


class BatchNorm(nn.Module):
    \"\"\"A norm over the batch and the positions: each row's output depends on the other rows.\"\"\"

    def __init__(self, config):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(config.n_embd))

    def forward(self, x):
        return self.weight * (x - x.mean(dim=0, keepdim=True))


class DeadWeightMLP(nn.Module):
    \"\"\"A feed-forward part with a layer it never uses.\"\"\"

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.n_embd)
        self.spare = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        return self.c_fc(x).relu()


class MisnamedProjection(DeadWeightMLP):
    residual_projections = ("c_proj",)

    def forward(self, x):
        return self.spare(self.c_fc(x).relu())


def component(kind, name, target):
    return Component(name=name, kind=kind, summary=name, target=f"{__name__}:{target}")


@hookimpl
def cleangpt_register_feedforward():
    return [
        component("feedforward", "mixing", "MixingMLP"),
        component("feedforward", "dead_weight", "DeadWeightMLP"),
        component("feedforward", "misnamed", "MisnamedProjection"),
    ]


@hookimpl
def cleangpt_register_norms():
    return [component("norm", "batchnorm", "BatchNorm")]
"""


@pytest.fixture
def broken_parts(install_plugin):
    install_plugin("cleangpt-broken-parts", BROKEN_PARTS)


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("feedforward", "mixing", r"acts on each position alone: changing position 8 changed positions \[9, 10"),
        ("norm", "batchnorm", "rows of a batch must not mix: row 0 alone gives another output"),
        ("feedforward", "dead_weight", r"no gradient reached \['transformer.h.0.mlp.spare.weight'"),
        ("feedforward", "misnamed", r"names 'c_proj', which is not one of its layers \(c_fc, spare\)"),
    ],
)
def test_the_part_kit_catches_what_a_part_alone_gets_wrong(broken_parts, kind, name, message):
    with pytest.raises(Exception, match=message) as error:
        check_part_contract(kind, name)
    assert f"{kind} {name!r} in Vanilla" in str(error.value) or "residual_projections" in str(error.value)
