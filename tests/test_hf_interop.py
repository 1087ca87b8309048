"""Vanilla against transformers' GPT-2 on the same weights, in both directions (offline, random weights)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from cleangpt_core.huggingface.weights import (
    HFConversionError,
    from_hf_state_dict,
    load_hf_pretrained,
    save_hf_pretrained,
    to_hf_state_dict,
    vanilla_config_from_hf,
)
from cleangpt_core.model import get_model
from cleangpt_core.testing.architecture import perturb_parameters

ATOL = 1e-5


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=71, n_positions=20, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None
    )
    return perturb_parameters(GPT2LMHeadModel(config), seed=1).eval()


@pytest.fixture
def tokens():
    return torch.randint(0, 71, (3, 20), generator=torch.Generator().manual_seed(0))


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


def _our_logits(model, tokens):
    with torch.no_grad():
        return model(tokens)["logits"]


def test_gpt2_state_dict_loads_into_vanilla_with_matching_logits(hf_model, tokens):
    ours = from_hf_state_dict(hf_model.state_dict(), vanilla_config_from_hf(hf_model.config.to_dict())).eval()
    assert torch.allclose(_our_logits(ours, tokens), _hf_logits(hf_model, tokens), atol=ATOL, rtol=0)


def test_directory_saved_by_transformers_loads_with_matching_logits(hf_model, tokens, tmp_path):
    hf_model.save_pretrained(tmp_path)
    ours = load_hf_pretrained(tmp_path).eval()
    assert ours.config.block_size == 20 and ours.config.vocab_size == 71
    assert torch.allclose(_our_logits(ours, tokens), _hf_logits(hf_model, tokens), atol=ATOL, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_exported_state_dict_gives_transformers_the_same_logits(tokens, bias):
    torch.manual_seed(0)
    ours = perturb_parameters(
        get_model("Vanilla", vocab_size=71, n_layer=2, n_head=4, n_embd=32, block_size=20, bias=bias)
    )
    ours.eval()
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=71, n_positions=20, n_embd=32, n_layer=2, n_head=4)).eval()
    hf.load_state_dict(to_hf_state_dict(ours), strict=True)
    assert torch.allclose(_hf_logits(hf, tokens), _our_logits(ours, tokens), atol=ATOL, rtol=0)


def test_exported_directory_loads_with_from_pretrained(tokens, tmp_path):
    torch.manual_seed(0)
    ours = perturb_parameters(get_model("Vanilla", vocab_size=71, n_layer=2, n_head=4, n_embd=32, block_size=20))
    ours.eval()
    save_hf_pretrained(ours, tmp_path)
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert torch.allclose(_hf_logits(hf, tokens), _our_logits(ours, tokens), atol=ATOL, rtol=0)
    assert torch.equal(load_hf_pretrained(tmp_path).transformer.wte.weight, ours.transformer.wte.weight)


def test_greedy_generation_matches_transformers_generate(hf_model):
    ours = from_hf_state_dict(hf_model.state_dict(), vanilla_config_from_hf(hf_model.config.to_dict())).eval()
    prompt = torch.randint(0, 71, (2, 5), generator=torch.Generator().manual_seed(3))
    expected = hf_model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False, pad_token_id=0
    )
    assert torch.equal(ours.generate(prompt, 12, temperature=0.0), expected)


def test_unsupported_gpt2_options_are_refused_by_name():
    with pytest.raises(HFConversionError, match="activation_function"):
        vanilla_config_from_hf({"model_type": "gpt2", "activation_function": "relu"})
    with pytest.raises(HFConversionError, match="only GPT-2"):
        vanilla_config_from_hf({"model_type": "llama"})


def test_a_directory_with_only_pickled_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32, "n_head": 4}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(HFConversionError, match="never loads pickle"):
        load_hf_pretrained(tmp_path)


def test_a_bare_gpt2_model_state_dict_loads_with_the_head_tied_to_the_embedding(hf_model, tokens):
    bare = {
        name.removeprefix("transformer."): t for name, t in hf_model.state_dict().items() if name != "lm_head.weight"
    }
    ours = from_hf_state_dict(bare, vanilla_config_from_hf(hf_model.config.to_dict())).eval()
    assert ours.lm_head.weight is ours.transformer.wte.weight
    assert torch.allclose(_our_logits(ours, tokens), _hf_logits(hf_model, tokens), atol=ATOL, rtol=0)
