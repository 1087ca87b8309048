"""Hugging Face GPT-2 weights in and out of Vanilla.

Vanilla uses GPT-2's parameter names, so conversion is a matter of layout: transformers' GPT-2 stores its
linear layers as `Conv1D` with the weight transposed (in, out). Directories are read from safetensors and
JSON only (never `pytorch_model.bin`, which is a pickle); a sharded checkpoint's index is followed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cleangpt_core.atomic_write import atomic_target
from cleangpt_core.config import GPTConfig, validate_config
from cleangpt_core.errors import HFConversionError
from cleangpt_core.model.model_Vanilla import VanillaTransformerModel

# Linear layers that transformers' GPT-2 stores as Conv1D, i.e. with weight (in_features, out_features).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_PREFIX = "transformer."


def vanilla_config_from_hf(hf_config: dict[str, Any]) -> GPTConfig:
    """The Vanilla config of a transformers GPT-2 config (dict); refuses options Vanilla does not implement."""
    model_type = hf_config.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise HFConversionError(f"only GPT-2 checkpoints can be loaded into Vanilla, got model_type={model_type!r}")
    n_embd = hf_config.get("n_embd", 768)
    unsupported = {
        "activation_function": (hf_config.get("activation_function", "gelu_new"), {"gelu_new", "gelu_pytorch_tanh"}),
        "n_inner": (hf_config.get("n_inner"), {None, 4 * n_embd}),
        "layer_norm_epsilon": (hf_config.get("layer_norm_epsilon", 1e-5), {1e-5}),
        "scale_attn_by_inverse_layer_idx": (hf_config.get("scale_attn_by_inverse_layer_idx", False), {False}),
        "scale_attn_weights": (hf_config.get("scale_attn_weights", True), {True}),
        "tie_word_embeddings": (hf_config.get("tie_word_embeddings", True), {True}),
    }
    for field, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise HFConversionError(f"GPT-2 config has {field}={value!r}; Vanilla supports {sorted(map(str, allowed))}")
    data = {
        "model_type": "Vanilla",
        "vocab_size": hf_config.get("vocab_size", 50257),
        "n_layer": hf_config.get("n_layer", 12),
        "n_head": hf_config.get("n_head", 12),
        "n_embd": n_embd,
        "block_size": hf_config.get("n_positions", 1024),
        "dropout": hf_config.get("resid_pdrop", 0.0),
        "bias": True,
    }
    return validate_config(GPTConfig, data, "Vanilla config converted from GPT-2")


def hf_config_from_vanilla(config: GPTConfig | Any) -> dict[str, Any]:
    """The transformers `GPT2Config` fields describing a Vanilla model."""
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "dtype": "float32",
    }


def from_hf_state_dict(state_dict: dict[str, torch.Tensor], config: GPTConfig) -> VanillaTransformerModel:
    """A Vanilla model holding the weights of a `GPT2LMHeadModel` (or `GPT2Model`) state dict."""
    model = VanillaTransformerModel(config.for_architecture() if isinstance(config, GPTConfig) else config)
    ours = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")) and name not in ours:
            continue  # causal-mask buffers of older transformers versions, not weights
        key = name if name.startswith((_PREFIX, "lm_head.")) else _PREFIX + name
        converted[key] = tensor.t() if key.endswith(_CONV1D_SUFFIXES) else tensor
    converted.setdefault("lm_head.weight", converted.get(_PREFIX + "wte.weight"))
    missing = sorted(set(ours) - set(converted))
    unexpected = sorted(set(converted) - set(ours))
    if missing or unexpected:
        raise HFConversionError(f"GPT-2 weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in converted.items():
        if tensor.shape != ours[name].shape:
            raise HFConversionError(
                f"{name}: GPT-2 tensor has shape {tuple(tensor.shape)}, Vanilla needs {tuple(ours[name].shape)}"
            )
    model.load_state_dict(converted)
    return model


def to_hf_state_dict(model: VanillaTransformerModel) -> dict[str, torch.Tensor]:
    """The `GPT2LMHeadModel` state dict of a Vanilla model (biases filled with zeros when bias=False)."""
    exported: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        exported[name] = tensor.t().contiguous() if name.endswith(_CONV1D_SUFFIXES) else tensor.clone()
    if not model.config.bias:  # GPT-2 always has biases; zeros compute the same function
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear | torch.nn.LayerNorm) and name != "lm_head":
                out_features = module.weight.shape[0] if isinstance(module, torch.nn.Linear) else module.weight.numel()
                exported[f"{name}.bias"] = torch.zeros(out_features, dtype=module.weight.dtype)
    return exported


def load_hf_pretrained(directory: str | Path) -> VanillaTransformerModel:
    """A Vanilla model from a directory written by transformers' `save_pretrained` (safetensors only)."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise HFConversionError(f"{str(directory)!r} has no config.json: it is not a transformers model directory")
    config = vanilla_config_from_hf(json.loads(config_path.read_text(encoding="utf-8")))
    return from_hf_state_dict(read_hf_weights(directory), config)


def read_hf_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a transformers model directory: model.safetensors, or the shards its index names."""
    directory = Path(directory)
    index_path = directory / "model.safetensors.index.json"
    if index_path.is_file():
        shards = sorted(set(json.loads(index_path.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (directory / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise HFConversionError(
            f"{str(directory)!r} has no model.safetensors; convert pickled weights with transformers first "
            "(cleanGPT never loads pickle files)"
        )
    state_dict: dict[str, torch.Tensor] = {}
    for shard in shards:
        state_dict.update(load_file(str(directory / shard)))
    return state_dict


def save_hf_pretrained(model: VanillaTransformerModel, directory: str | Path) -> Path:
    """Write `model` as a transformers GPT-2 directory (config.json + model.safetensors).

    `GPT2LMHeadModel.from_pretrained(directory)` loads it; the output head is left out, as transformers
    does, because it is tied to the token embedding.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor for name, tensor in to_hf_state_dict(model).items() if name != "lm_head.weight"}
    with atomic_target(directory / "model.safetensors") as aside:
        save_file(tensors, str(aside), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(hf_config_from_vanilla(model.config), indent=2) + "\n")
    return directory
