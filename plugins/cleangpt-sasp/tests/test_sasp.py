"""SASP: registration through the entry point, the paper's initialisation facts, options and the contract."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from cleangpt_sasp import SASPConfig, SASPTransformerModel

from cleangpt_core.config import GPTConfig
from cleangpt_core.errors import ConfigError
from cleangpt_core.model import get_model
from cleangpt_core.model.kv_cache import begin_forward
from cleangpt_core.registry import get_component
from cleangpt_core.testing.architecture import check_architecture_contract, registered_model_factory

SHAPE = {"vocab_size": 59, "n_layer": 3, "n_head": 4, "n_embd": 32, "block_size": 16}
OPTIONS = [
    {},
    {"use_v": True, "use_proj": True},
    {"norm": "layer", "activation": "gelu"},
    {"norm": "none", "bias": False, "first_layer_value": False},
]


def _model(**options):
    torch.manual_seed(0)
    return get_model("SASP", **SHAPE, **options).eval()


def test_sasp_is_registered_by_its_distribution_through_the_entry_point():
    component = get_component("architecture", "sasp")
    assert component.name == "SASP"
    assert component.distribution == "cleangpt-sasp"
    assert component.config_schema is SASPConfig
    assert component.load() is SASPTransformerModel


def test_registering_the_plugin_does_not_import_torch():
    code = "import sys, cleangpt_sasp.plugin; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gpt_config_accepts_sasp_fields_with_the_papers_defaults():
    config = GPTConfig(model_type="sasp", n_embd=32, n_head=4).for_architecture()
    assert isinstance(config, SASPConfig) and config.model_type == "SASP"
    assert (config.use_v, config.use_proj, config.norm, config.activation) == (False, False, "rms", "relu")
    assert (config.beta_sa, config.beta_ff) == (1.0, 0.1)


def test_an_invalid_option_names_the_field_and_the_choices():
    with pytest.raises(ConfigError, match="norm"):
        get_model("SASP", **SHAPE, norm="batch")
    with pytest.raises(ConfigError, match="use_v"):
        get_model("SASP", **SHAPE, use_value=True)


@pytest.mark.parametrize("options", OPTIONS)
def test_sasp_keeps_the_architecture_contract(options):
    check_architecture_contract(registered_model_factory("SASP", **options))


@pytest.mark.parametrize("options", OPTIONS)
def test_query_weights_are_zero_after_construction_and_keys_are_not(options):
    model = _model(**options)
    width = SHAPE["n_embd"]
    for block in model.transformer.h:
        assert torch.count_nonzero(block.attn.c_qk.weight[:width]) == 0
        assert block.attn.c_qk.weight[width:].std() > 0.01
        if block.attn.c_qk.bias is not None:
            assert torch.count_nonzero(block.attn.c_qk.bias[:width]) == 0


def test_reinitialising_keeps_the_zero_queries():
    model = _model()
    with torch.no_grad():
        model.transformer.h[0].attn.c_qk.weight.fill_(1.0)
    model.reset_parameters()
    assert torch.count_nonzero(model.transformer.h[0].attn.c_qk.weight[: SHAPE["n_embd"]]) == 0


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("padded", [False, True])
def test_each_attention_sub_block_is_the_identity_at_initialisation(options, padded):
    model = _model(**options)
    x = torch.randn(2, 12, SHAPE["n_embd"], generator=torch.Generator().manual_seed(0))
    input_ids = torch.zeros(2, 12, dtype=torch.long)
    mask = torch.ones(2, 12, dtype=torch.long)
    if padded:
        mask[1, :5] = 0
    layout = begin_forward(input_ids, mask, None)
    for block in model.transformer.h:
        assert torch.allclose(block.attn(x, layout, None), x, atol=1e-6)


def _block_params(block):
    return sum(p.numel() for p in block.parameters())


@pytest.mark.parametrize("width", [64, 128])
def test_a_layer_without_value_and_projection_has_10_d_squared_parameters_against_vanillas_12(width):
    shape = {**SHAPE, "n_embd": width, "n_layer": 2}
    sasp = get_model("SASP", **shape)
    vanilla = get_model("Vanilla", **shape)
    sasp_layer, vanilla_layer = _block_params(sasp.transformer.h[1]), _block_params(vanilla.transformer.h[1])
    assert 0 <= sasp_layer - 10 * width**2 < 10 * width
    assert 0 <= vanilla_layer - 12 * width**2 < 20 * width
    # The first layer keeps a value matrix by default (d^2 more); value and projection everywhere add 2d^2.
    assert _block_params(sasp.transformer.h[0]) - sasp_layer == width**2
    with_both = get_model("SASP", **shape, use_v=True, use_proj=True)
    assert _block_params(with_both.transformer.h[1]) - sasp_layer == 2 * width**2


def test_block_gains_start_at_the_papers_values_and_are_trainable():
    block = _model().transformer.h[0]
    assert block.beta_sa.item() == 1.0 and block.beta_ff.item() == pytest.approx(0.1)
    for gain in (block.attn.alpha, block.attn.beta, block.attn.gamma):
        assert gain.shape == (SHAPE["n_head"], 1) and torch.all(gain == 1.0) and gain.requires_grad
    assert block.beta_sa.requires_grad and block.beta_ff.requires_grad


def test_gains_norms_and_biases_get_no_weight_decay():
    model = _model()
    decay, no_decay = model.optimizer_groups(0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]}
    assert (
        {"alpha", "beta", "gamma", "beta_sa", "beta_ff", "bias", "weight"}
        >= no_decay_names
        >= {
            "alpha",
            "beta",
            "gamma",
            "beta_sa",
            "beta_ff",
        }
    )
    assert all(p.dim() == 2 for p in decay["params"])


def test_parameters_are_float32_and_gains_move_under_bfloat16_autocast():
    model = _model()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    optimizer = torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-4)
    tokens = torch.randint(0, SHAPE["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(0))
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(tokens, labels=tokens)["loss"]
    loss.backward()
    optimizer.step()
    assert model.transformer.h[0].beta_sa.item() != 1.0
    assert not torch.all(model.transformer.h[1].attn.alpha == 1.0)


def test_a_few_adamw_steps_learn_a_repeating_sequence():
    model = _model().train()
    optimizer = torch.optim.AdamW(model.optimizer_groups(0.1), lr=3e-3)
    tokens = torch.arange(16).remainder(5).unsqueeze(0).repeat(4, 1)
    losses = []
    for _ in range(30):
        loss = model(tokens, labels=tokens)["loss"]
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] / 3


@pytest.mark.parametrize("preset", ["Vanilla", "Llama"])
@pytest.mark.parametrize(
    "parts",
    [
        {"attention": "shaped", "use_v": True},
        {"residual": "skipless_parallel", "beta_ff": 0.2},
        {"attention": "shaped", "residual": "skipless_parallel", "use_proj": True},
    ],
)
def test_shaped_attention_and_the_skipless_block_are_parts_of_either_preset(preset, parts):
    assert get_component("attention", "shaped").distribution == "cleangpt-sasp"
    check_architecture_contract(registered_model_factory(preset, **parts))


def test_shaped_attention_is_the_identity_at_initialisation_with_rotary_positions():
    torch.manual_seed(0)
    model = get_model("Llama", **SHAPE, attention="shaped", first_layer_value=False).eval()
    x = torch.randn(2, 12, SHAPE["n_embd"], generator=torch.Generator().manual_seed(0))
    layout = begin_forward(torch.zeros(2, 12, dtype=torch.long), None, None)
    _, layout = model.transformer.wpe(x, layout)  # the rotary angles of these positions
    for block in model.transformer.h:
        assert torch.allclose(block.attn(x, layout, None), x, atol=1e-6)
