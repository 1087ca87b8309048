"""The Vanilla and Llama presets of the decoder: what each is made of, old checkpoints, the cache of grouped-query
attention, and parts chosen from the command line."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from cleangpt_core.cli.main import cli
from cleangpt_core.model import (
    ALiBi,
    CausalSelfAttention,
    LayerNorm,
    LearnedPositions,
    PreNormBlock,
    RMSNorm,
    Rotary,
    SwiGLU,
    begin_forward,
    get_model,
    load_model,
)
from cleangpt_core.model.feedforward import MLP
from cleangpt_core.model.position import alibi_slopes

SHAPE = {"vocab_size": 41, "n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 12}


def test_vanilla_is_gpt2_part_by_part_with_gpt2s_parameter_names():
    model = get_model("Vanilla", **SHAPE)
    block = model.transformer.h[0]
    assert isinstance(model.transformer.wpe, LearnedPositions) and isinstance(model.transformer.ln_f, LayerNorm)
    assert isinstance(block, PreNormBlock) and isinstance(block.attn, CausalSelfAttention)
    assert isinstance(block.mlp, MLP) and model.lm_head.weight is model.transformer.wte.weight
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=41, n_positions=12, n_embd=32, n_layer=2, n_head=4))
    theirs = {name for name in gpt2.state_dict() if not name.endswith((".attn.bias", ".attn.masked_bias"))}
    assert set(model.state_dict()) == theirs


def test_llama_is_rotary_rmsnorm_swiglu_without_biases_and_with_its_own_head():
    model = get_model("Llama", **SHAPE)
    block = model.transformer.h[0]
    assert isinstance(model.transformer.wpe, Rotary) and isinstance(model.transformer.ln_f, RMSNorm)
    assert isinstance(block.mlp, SwiGLU) and isinstance(block.ln_1, RMSNorm)
    assert not any(name.endswith(".bias") for name in model.state_dict())
    assert model.lm_head.weight is not model.transformer.wte.weight
    tied = get_model("Llama", **SHAPE, tie_embeddings=True)
    assert tied.lm_head.weight is tied.transformer.wte.weight


def test_a_checkpoint_saved_before_parts_existed_loads_as_vanilla(tmp_path):
    torch.manual_seed(0)
    model = get_model("Vanilla", **SHAPE).eval()
    old_config = {"model_type": "Vanilla", **SHAPE, "dropout": 0.0, "bias": True}  # no part fields
    (tmp_path / "config.json").write_text(json.dumps(old_config))
    weights = {name: tensor for name, tensor in model.state_dict().items() if name != "lm_head.weight"}
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    restored = load_model(tmp_path)
    tokens = torch.randint(0, 41, (2, 12))
    assert torch.equal(restored(tokens)["logits"], model(tokens)["logits"])
    assert restored.config.position == "learned"


def test_grouped_query_attention_caches_only_its_key_value_heads():
    model = get_model("Llama", **SHAPE, n_kv_head=1).eval()
    cache = model.allocate_kv_cache(2, 12)
    model(torch.randint(0, 41, (2, 5)), kv_cache=cache)
    assert cache.keys[0].shape == (2, 1, 12, 8) and cache.length == 5


def test_laying_out_a_call_without_a_cache_changes_nothing_and_with_one_only_through_its_methods():
    model = get_model("Llama", **SHAPE).eval()
    tokens, mask = torch.randint(0, 41, (2, 6)), torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])
    layout = begin_forward(tokens, mask, None)
    assert layout.positions.tolist() == [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    cache = model.allocate_kv_cache(2, 12)
    layout = begin_forward(tokens, mask, cache)  # records the padding (add_tokens); advance comes after the layers
    assert cache.length == 0 and cache.valid_count.tolist() == [4, 6]
    assert layout.positions.tolist() == [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]


def test_alibi_slopes_follow_the_paper_for_any_head_count():
    assert alibi_slopes(8).tolist() == [2 ** -(i + 1) for i in range(8)]
    assert torch.allclose(alibi_slopes(6), torch.tensor([2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]))
    bias = ALiBi(get_model("Vanilla", **SHAPE, position="alibi").config)(
        torch.zeros(1, 3, 32), begin_forward(torch.zeros(1, 3, dtype=torch.long), None, None)
    )[1].bias
    assert bias.shape == (1, 4, 3, 3) and bias[0, 0, 2].tolist() == [-0.5, -0.25, 0.0]


def test_a_part_chosen_with_set_on_the_command_line_is_checked_before_any_work(tmp_path):
    result = CliRunner().invoke(
        cli, ["train", "--set", "model.position=alibl", "--set", f"output.dir={tmp_path / 'run'}"]
    )
    assert result.exit_code != 0
    assert result.output.strip().count("\n") == 0 and "did you mean 'alibi'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
