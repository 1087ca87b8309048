"""The architecture contract over every built-in part: each part of each kind in each preset, and each
preset with each position encoding (causality, cache = recomputation with padding and past the context,
padding invariance, save/load, determinism, too-long input refused)."""

from __future__ import annotations

import pytest

from cleangpt_core.errors import ConfigError
from cleangpt_core.model import get_model
from cleangpt_core.plugin_api import PART_KINDS
from cleangpt_core.registry import BUILTIN_DISTRIBUTION, get_registry
from cleangpt_core.testing.architecture import check_architecture_contract, registered_model_factory

PRESETS = ("Vanilla", "Llama")
BUILTIN_PARTS = [
    (kind, component.name)
    for kind in PART_KINDS
    for component in get_registry().components(kind)
    if component.distribution == BUILTIN_DISTRIBUTION
]
POSITIONS = [name for kind, name in BUILTIN_PARTS if kind == "position"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize(("kind", "part"), BUILTIN_PARTS)
def test_every_built_in_part_keeps_the_contract_in_each_preset(preset, kind, part):
    check_architecture_contract(registered_model_factory(preset, **{kind: part}))


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
