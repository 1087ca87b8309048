"""Each decoder part's options live in its own section of the model config (``attention: {name: causal,
n_kv_head: 2}``): two parts' options of the same name stay apart, the short forms of plugin API 1.x (bare
option names, part names alone) still work, saved runs of the flat form load unchanged, and the decoder is
handed the part classes resolved from the config."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.config import GPTConfig, LlamaConfig, resolve_experiment
from cleangpt_core.errors import ConfigError
from cleangpt_core.model import (
    CausalSelfAttention,
    Decoder,
    LayerNorm,
    PartClasses,
    RMSNorm,
    get_model,
    load_model,
    resolve_parts,
    save_model,
)
from cleangpt_core.registry import get_registry

SHAPE = {"vocab_size": 31, "n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16}

# Two distributions, each with a part declaring an option `gain`, built as a plugin of API 1.1 builds it.
GAINED_PART = """
from pydantic import Field, field_validator

from cleangpt_core.config import StrictModel
from cleangpt_core.plugin_api import Component, hookimpl

CLEANGPT_PLUGIN_API = "1.1"
VALIDATED = []  # each value `gain` was validated with


class GainOptions(StrictModel):
    gain: float = Field({default}, description="scales the part's output", validate_default=True)

    @field_validator("gain")
    @classmethod
    def _count(cls, value):
        VALIDATED.append(value)
        return value


@hookimpl
def cleangpt_register_{hook}():
    return [Component(name="{name}", kind="{kind}", summary="a part scaling its output by `gain`",
                      target="{implementation}:{cls}", config_schema=GainOptions)]
"""

GAINED_IMPLEMENTATION = """
from cleangpt_core.model import {base}, part_options
from {plugin} import GainOptions


class {cls}({base}):
    def __init__(self, config, *args):
        super().__init__(config, *args)
        self.gain = part_options(config, GainOptions).gain

    def forward(self, x, *args):
        return self.gain * super().forward(x, *args)
"""


@pytest.fixture
def gained_parts(install_plugin, tmp_path):
    """`gained_attention` (cleangpt-gain-attention) and `gained_mlp` (cleangpt-gain-mlp), both with `gain`."""
    for distribution, kind, hook, name, cls, base, default in (
        (
            "cleangpt-gain-attention",
            "attention",
            "attention",
            "gained_attention",
            "GainedAttention",
            "CausalSelfAttention",
            1.5,
        ),
        ("cleangpt-gain-mlp", "feedforward", "feedforward", "gained_mlp", "GainedMLP", "MLP", 0.5),
    ):
        implementation = f"{name}_impl_{tmp_path.name}"
        source = GAINED_PART.format(
            default=default, hook=hook, name=name, kind=kind, implementation=implementation, cls=cls
        )
        plugin = install_plugin(distribution, source)
        code = textwrap.dedent(GAINED_IMPLEMENTATION).format(base=base, plugin=plugin, cls=cls)
        (tmp_path / "site-packages" / f"{implementation}.py").write_text(code)


def test_a_parts_options_are_validated_once_for_the_model_built_with_them(gained_parts):
    get_registry()  # imports the plugin modules, which record what their schema validates
    counts = [module.VALIDATED for name, module in sys.modules.items() if name.startswith("cleangpt_test_plugin_")]
    assert len(counts) == 2
    model = get_model("Vanilla", **SHAPE, attention={"name": "gained_attention", "gain": 2.0}, feedforward="gained_mlp")
    assert _gains(model) == (2.0, 0.5)
    assert sorted(value for validated in counts for value in validated) == [0.5, 2.0]


def _gains(model) -> tuple[float, float]:
    block = model.transformer.h[0]
    return block.attn.gain, block.mlp.gain


def test_two_plugins_parts_with_the_same_option_name_keep_their_values_apart(gained_parts, tmp_path):
    model = get_model(
        "Llama",
        **SHAPE,
        attention={"name": "gained_attention", "gain": 2.0},
        feedforward={"name": "gained_mlp", "gain": 3.0},
    )
    assert _gains(model) == (2.0, 3.0)
    assert (model.config.attention.gain, model.config.feedforward.gain) == (2.0, 3.0)
    assert model(torch.zeros(1, 4, dtype=torch.long))["logits"].shape == (1, 4, 31)

    restored = load_model(save_model(model, tmp_path / "saved"))
    assert _gains(restored) == (2.0, 3.0)
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert (saved["attention"], saved["feedforward"]["gain"]) == ({"name": "gained_attention", "gain": 2.0}, 3.0)


def test_each_part_takes_its_own_default_for_an_option_another_part_also_declares(gained_parts):
    model = get_model("Vanilla", **SHAPE, attention="gained_attention", feedforward={"name": "gained_mlp"})
    assert _gains(model) == (1.5, 0.5)


def test_the_command_lines_nested_keys_reach_each_parts_own_section(gained_parts):
    config = resolve_experiment(
        {"model": {"attention": "gained_attention"}},
        ["model.attention.gain=2", "model.feedforward.name=gained_mlp", "model.feedforward.gain=3"],
    )
    assert (config.model.attention.gain, config.model.feedforward.gain) == (2.0, 3.0)
    assert _gains(get_model(config.model.model_type, config=config.model)) == (2.0, 3.0)


def test_a_bare_option_name_two_parts_declare_goes_to_both_with_a_warning(gained_parts):
    with pytest.warns(UserWarning, match=r"'gain' is an option of 2 parts .*set attention.gain, feedforward.gain"):
        model = get_model("Vanilla", **SHAPE, attention="gained_attention", feedforward="gained_mlp", gain=4.0)
    assert _gains(model) == (4.0, 4.0)  # what plugin API 1.x's flat config gave both


def test_reading_a_bare_option_name_the_parts_disagree_on_names_both(gained_parts):
    config = GPTConfig(
        model_type="Vanilla", attention={"name": "gained_attention", "gain": 2.0}, feedforward="gained_mlp"
    )
    with pytest.raises(AttributeError, match=r"attention.gain=2.0, feedforward.gain=0.5"):
        _ = config.gain


# What the flat form of plugin API 1.3 wrote into a checkpoint's config.json for this model (copied from one).
FLAT_LLAMA_CONFIG = {
    "model_type": "Llama", "vocab_size": 31, "n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16,
    "dropout": 0.0, "bias": False, "attention": "causal", "feedforward": "swiglu", "norm": "rmsnorm",
    "position": "rotary", "residual": "pre_norm", "tie_embeddings": False, "zero_init_projections": False,
    "logit_softcap": None, "n_kv_head": 2, "rope_base": 500000.0, "ffn_hidden": 48, "norm_eps": 1e-06,
    "qk_norm": True,
}  # fmt: skip
FLAT_OPTIONS = {"n_kv_head": 2, "rope_base": 500000.0, "ffn_hidden": 48, "norm_eps": 1e-6, "qk_norm": True}
NESTED_OPTIONS = {
    "attention": {"n_kv_head": 2, "qk_norm": True},
    "feedforward": {"ffn_hidden": 48},
    "norm": {"norm_eps": 1e-6},
    "position": {"name": "rotary", "rope_base": 500000.0},
}


def test_the_bare_option_names_and_the_sections_build_the_same_model():
    torch.manual_seed(0)
    flat = get_model("Llama", **SHAPE, **FLAT_OPTIONS)
    torch.manual_seed(0)
    nested = get_model("Llama", **SHAPE, **NESTED_OPTIONS)
    assert flat.config == nested.config
    assert flat.config.attention.model_dump() == {"name": "causal", "n_kv_head": 2, "qk_norm": True, "qkv_bias": None}
    assert flat.transformer.h[0].attn.n_kv_head == 2 and flat.transformer.ln_f.eps == 1e-6
    for (name, ours), theirs in zip(flat.state_dict().items(), nested.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name
    assert GPTConfig(model_type="Llama", **FLAT_OPTIONS) == GPTConfig(model_type="Llama", **NESTED_OPTIONS)


def test_a_checkpoint_saved_with_flat_options_loads_bit_identically_and_saves_as_sections(tmp_path):
    torch.manual_seed(0)
    model = get_model("Llama", **SHAPE, **FLAT_OPTIONS).eval()
    save_model(model, tmp_path / "old")
    (tmp_path / "old" / "config.json").write_text(json.dumps(FLAT_LLAMA_CONFIG))  # as the flat form saved it

    loaded = load_model(tmp_path / "old").eval()
    for (name, ours), theirs in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name
    tokens = torch.randint(0, 31, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(tokens)["logits"], loaded(tokens)["logits"])
    assert (loaded.config.n_kv_head, loaded.config.position.rope_base) == (2, 500000.0)

    save_model(loaded, tmp_path / "new")
    resaved = json.loads((tmp_path / "new" / "config.json").read_text())
    assert resaved["norm"] == {"name": "rmsnorm", "norm_eps": 1e-6} and "n_kv_head" not in resaved


def test_a_saved_experiment_with_flat_model_options_resolves_into_sections():
    saved = {"model": {"model_type": "Llama", **SHAPE, "position": "alibi", "n_kv_head": 2, "norm_eps": 1e-6}}
    config = resolve_experiment(saved, ["model.qk_norm=true"])
    dumped = config.model_dump(mode="json")["model"]
    assert dumped["attention"] == {"name": "causal", "n_kv_head": 2, "qk_norm": True, "qkv_bias": None}
    assert (dumped["position"], dumped["norm"]["norm_eps"]) == ({"name": "alibi"}, 1e-6)
    assert resolve_experiment(config.model_dump(mode="json")) == config  # the nested form reads back as itself


def test_a_bare_option_name_is_applied_over_the_parts_section():
    config = LlamaConfig(attention={"name": "gqa", "n_kv_head": 4}, n_kv_head=2)
    assert config.attention == "causal" and config.attention.n_kv_head == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"position": {"name": "alibi", "rope_base": 1.0}}, r"position 'alibi' takes no options, got rope_base"),
        ({"attention": {"n_kv_heads": 2}}, r"did you mean 'n_kv_head'"),
        ({"attention": {"n_kv_head": 3}}, r"n_kv_head=3 does not divide n_head=4"),
        ({"norm": {"name": "rmsnrom"}}, r"did you mean 'rmsnorm'"),
        ({"feedforward": 3}, r"feedforward must be a part name or a section"),
    ],
)
def test_a_wrong_part_section_is_an_error_naming_it(options, message):
    with pytest.raises(ConfigError, match=message):
        get_model("Llama", **SHAPE, **options)


def test_the_decoder_is_built_from_the_part_classes_it_is_given():
    config = GPTConfig(model_type="Vanilla", **SHAPE).for_architecture()
    resolved = resolve_parts(config)
    parts = PartClasses(resolved.attention, resolved.feedforward, RMSNorm, resolved.position, resolved.residual)
    model = Decoder(config, parts=parts)
    assert isinstance(model.transformer.ln_f, RMSNorm) and isinstance(model.transformer.h[0].ln_1, RMSNorm)
    assert isinstance(model.transformer.h[0].attn, CausalSelfAttention)


def test_a_decoder_built_without_parts_resolves_the_same_ones_get_model_hands_it():
    torch.manual_seed(0)
    built = get_model("Llama", **SHAPE, **NESTED_OPTIONS)
    torch.manual_seed(0)
    direct = Decoder(built.config)  # as plugins of API 1.x build it
    assert isinstance(direct.transformer.ln_f, RMSNorm) and not isinstance(direct.transformer.ln_f, LayerNorm)
    for (name, ours), theirs in zip(built.state_dict().items(), direct.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name


def test_show_config_lists_the_default_parts_options_under_their_sections():
    result = CliRunner().invoke(cli, ["show-config", "Llama"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # a field's row starts in the field column; a wrapped summary continues far to the right
    lines = result.output.splitlines()[2:]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ") and line[2:3] != " "}
    assert rows["attention"][:2] == ["part", "'causal'"] and rows["attention.n_kv_head"][:3] == ["int", "|", "None"]
    assert rows["position.rope_base"][:2] == ["float", "10000.0"] and "n_kv_head" not in rows
