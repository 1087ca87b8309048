"""The Llama preset against transformers' Llama, Qwen2 and Mistral on the same weights, in both directions
(offline: tiny random models, 2 layers, 4 heads, 2 key/value heads, width 64)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from cleangpt_core.huggingface.weights import (
    HFConversionError,
    from_hf_llama_state_dict,
    hf_config_from_llama,
    llama_config_from_hf,
    load_hf_pretrained,
    save_hf_pretrained,
    to_hf_llama_state_dict,
)
from cleangpt_core.model import get_model
from cleangpt_core.testing.architecture import perturb_parameters

ATOL = 1e-5
SHAPE = {
    "vocab_size": 71,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 24,
    "rms_norm_eps": 1e-5,
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
}
OUR_SHAPE = {"vocab_size": 71, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 64, "block_size": 24}


def _hf(model_class, config_class, **overrides):
    torch.manual_seed(0)
    return perturb_parameters(model_class(config_class(**{**SHAPE, **overrides})), seed=1).eval()


@pytest.fixture
def tokens():
    return torch.randint(0, 71, (3, 24), generator=torch.Generator().manual_seed(0))


def _hf_logits(model, tokens, **kwargs):
    with torch.no_grad():
        return model(tokens, **kwargs).logits


def _our_logits(model, tokens, **kwargs):
    with torch.no_grad():
        return model(tokens, **kwargs)["logits"]


def _close(actual, expected):
    assert (actual - expected).abs().max().item() <= ATOL


@pytest.mark.parametrize("tied", [False, True])
def test_llama_state_dict_loads_into_the_llama_preset_with_matching_logits(tokens, tied):
    hf = _hf(LlamaForCausalLM, LlamaConfig, tie_word_embeddings=tied, rope_theta=500000.0)
    config = llama_config_from_hf(hf.config.to_dict())
    assert (config.n_kv_head, config.tie_embeddings, config.rope_base) == (2, tied, 500000.0)
    ours = from_hf_llama_state_dict(hf.state_dict(), config).eval()
    _close(_our_logits(ours, tokens), _hf_logits(hf, tokens))


def test_left_padded_batch_matches_transformers(tokens):
    hf = _hf(LlamaForCausalLM, LlamaConfig)
    ours = from_hf_llama_state_dict(hf.state_dict(), llama_config_from_hf(hf.config.to_dict())).eval()
    mask = torch.ones_like(tokens)
    mask[1, :5] = 0
    # transformers gives pad positions their own logits; compare the real tokens, with its position ids.
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    expected = _hf_logits(hf, tokens, attention_mask=mask, position_ids=position_ids)
    _close(_our_logits(ours, tokens, attention_mask=mask)[mask.bool()], expected[mask.bool()])


@pytest.mark.parametrize("tied", [False, True])
def test_exported_llama_state_dict_gives_transformers_the_same_logits(tokens, tied):
    torch.manual_seed(0)
    ours = perturb_parameters(get_model("Llama", **OUR_SHAPE, tie_embeddings=tied, norm_eps=1e-6)).eval()
    hf_config = LlamaConfig(**{k: v for k, v in hf_config_from_llama(ours.config).items() if k != "architectures"})
    hf = LlamaForCausalLM(hf_config).eval()
    missing, unexpected = hf.load_state_dict(to_hf_llama_state_dict(ours), strict=False)
    assert unexpected == [] and set(missing) <= ({"lm_head.weight"} if tied else set())
    _close(_hf_logits(hf, tokens), _our_logits(ours, tokens))


@pytest.mark.parametrize("tied", [False, True])
def test_exported_llama_directory_loads_with_from_pretrained_and_back(tokens, tmp_path, tied):
    torch.manual_seed(0)
    ours = perturb_parameters(get_model("Llama", **OUR_SHAPE, tie_embeddings=tied, rope_base=1000.0)).eval()
    save_hf_pretrained(ours, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    hf = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(hf, LlamaForCausalLM)
    _close(_hf_logits(hf, tokens), _our_logits(ours, tokens))
    back = load_hf_pretrained(tmp_path).eval()
    expected = ours.config.model_dump()
    expected["feedforward"]["ffn_hidden"] = 192  # the width the default gave, stated in the Hugging Face config
    assert back.config.model_dump() == expected
    assert torch.equal(_our_logits(back, tokens), _our_logits(ours, tokens))


def test_directory_saved_by_transformers_loads_with_matching_logits(tokens, tmp_path):
    hf = _hf(LlamaForCausalLM, LlamaConfig)
    hf.save_pretrained(tmp_path)
    ours = load_hf_pretrained(tmp_path).eval()
    assert ours.config.model_type == "Llama"
    _close(_our_logits(ours, tokens), _hf_logits(hf, tokens))


def test_qwen2_loads_with_qkv_biases_and_exports_as_qwen2(tokens, tmp_path):
    hf = _hf(Qwen2ForCausalLM, Qwen2Config)
    hf.save_pretrained(tmp_path / "theirs")
    ours = load_hf_pretrained(tmp_path / "theirs").eval()
    assert (ours.config.bias, ours.config.qkv_bias) == (False, True)
    _close(_our_logits(ours, tokens), _hf_logits(hf, tokens))
    save_hf_pretrained(ours, tmp_path / "ours")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(again, Qwen2ForCausalLM)
    _close(_hf_logits(again, tokens), _hf_logits(hf, tokens))


def test_mistral_whose_window_covers_the_context_loads_as_llama(tokens, tmp_path):
    hf = _hf(MistralForCausalLM, MistralConfig, sliding_window=4096)
    hf.save_pretrained(tmp_path)
    _close(_our_logits(load_hf_pretrained(tmp_path).eval(), tokens), _hf_logits(hf, tokens))


def test_a_sliding_window_shorter_than_the_context_is_refused():
    with pytest.raises(HFConversionError, match="sliding_window=8"):
        llama_config_from_hf({**SHAPE, "model_type": "mistral", "sliding_window": 8})


def test_rope_scaling_is_refused_by_name():
    config = {**SHAPE, "model_type": "llama", "rope_parameters": {"rope_type": "linear", "factor": 2.0}}
    with pytest.raises(HFConversionError, match="linear"):
        llama_config_from_hf(config)


def test_greedy_generation_matches_transformers_generate():
    hf = _hf(LlamaForCausalLM, LlamaConfig)
    ours = from_hf_llama_state_dict(hf.state_dict(), llama_config_from_hf(hf.config.to_dict())).eval()
    prompt = torch.randint(0, 71, (2, 5), generator=torch.Generator().manual_seed(3))
    expected = hf.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False, pad_token_id=0
    )
    assert torch.equal(ours.generate(prompt, 12, temperature=0.0), expected)


def test_parts_hugging_face_cannot_express_are_refused_before_writing(tmp_path):
    alibi = get_model("Llama", **OUR_SHAPE, position="alibi")
    with pytest.raises(HFConversionError, match="position='alibi'"):
        save_hf_pretrained(alibi, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(HFConversionError, match="QK-norm"):
        to_hf_llama_state_dict(get_model("Llama", **OUR_SHAPE, qk_norm=True))


def test_a_directory_with_only_pickled_llama_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**SHAPE, "model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(HFConversionError, match="never loads pickle"):
        load_hf_pretrained(tmp_path)
