"""Hugging Face weights in and out of the presets: GPT-2 for Vanilla, Llama (and Qwen2, Mistral) for Llama.

Vanilla uses GPT-2's parameter names, so its conversion is a matter of layout: transformers' GPT-2 stores
its linear layers as `Conv1D` with the weight transposed (in, out). Llama's differs by fusion only: our
`c_attn` is Llama's q/k/v projections stacked, our SwiGLU `c_fc` its gate and up projections stacked, and
rotary pairs features as Llama does. Qwen2 is Llama with q/k/v biases (`qkv_bias`), Mistral is Llama with a
sliding window, accepted when the window covers the whole context. Directories are read from safetensors
and JSON only (never `pytorch_model.bin`, which is a pickle); a sharded checkpoint's index is followed.

`load_hf_pretrained` and `save_hf_pretrained` pick the format from the config's `model_type`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cleangpt_core.checkpoints.atomic_write import atomic_target, write_text_atomic
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.config import GPTConfig, validate_config
from cleangpt_core.errors import HFConversionError
from cleangpt_core.model.decoder import Decoder
from cleangpt_core.model.factory import get_model
from cleangpt_core.model.feedforward import swiglu_hidden
from cleangpt_core.model.parametrization import attention_scale, base_head_dim, width_multiplier
from cleangpt_core.model.weights_header import check_block_count, meta_state_dict, read_header

# Linear layers that transformers' GPT-2 stores as Conv1D, i.e. with weight (in_features, out_features).
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_PREFIX = "transformer."
_GPT2_PARTS = {"attention": "causal", "feedforward": "gelu", "norm": "layernorm", "position": "learned"}
_LLAMA_PARTS = {"attention": "causal", "feedforward": "swiglu", "norm": "rmsnorm", "position": "rotary"}
_LLAMA_FAMILY = ("llama", "qwen2", "mistral")


def _require_parts(config: Any, parts: dict[str, str], family: str) -> None:
    """Refuse a model whose parts the Hugging Face `family` cannot express, naming the first that differs."""
    for kind, name in {**parts, "residual": "pre_norm"}.items():
        chosen = str(getattr(config, kind, name))  # a part's section reads as its name
        if chosen != name:
            raise HFConversionError(
                f"{family} has {kind}={name!r}; this model has {kind}={chosen!r}, which {family} cannot express"
            )


# -- GPT-2 <-> Vanilla -----------------------------------------------------------------------------------


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
    """The transformers `GPT2Config` fields describing a Vanilla model (refused if its parts are not GPT-2's)."""
    _require_parts(config, _GPT2_PARTS, "GPT-2")
    attention = config.attention
    if attention.n_kv_head not in (None, config.n_head) or attention.qk_norm or attention.qkv_bias is not None:
        raise HFConversionError("GPT-2 has plain multi-head attention: unset n_kv_head, qk_norm and qkv_bias")
    if config.feedforward.ffn_hidden not in (None, 4 * config.n_embd) or not config.tie_embeddings:
        raise HFConversionError("GPT-2 has a 4x MLP and a tied head: unset ffn_hidden and tie_embeddings=False")
    if config.norm.norm_eps != 1e-5:
        raise HFConversionError("GPT-2 has layer_norm_epsilon 1e-5: unset norm_eps")
    _refuse_inexpressible(config, "GPT-2")
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


def _refuse_inexpressible(config: Any, family: str) -> None:
    """Refuse what `family` cannot express: soft-capped logits, and muP away from its base width (an output
    multiplier and a 1/d_head attention scale; at the base width muP is the standard parametrization)."""
    if getattr(config, "logit_softcap", None) is not None:
        raise HFConversionError(f"{family} has no logit soft-capping: unset logit_softcap")
    if width_multiplier(config) != 1.0 or attention_scale(config.head_dim, base_head_dim(config)) is not None:
        raise HFConversionError(
            f"{family} has no muP output multiplier or attention scale: a model with parametrization=mup exports "
            "only at its mup_base_width"
        )


def _checked_load(
    architecture: str, config: GPTConfig, ours: dict[str, torch.Tensor], converted: dict[str, torch.Tensor], family: str
) -> Decoder:
    """Build the model and load the converted weights, refusing missing, unexpected or misshapen tensors by name
    first: `ours` is the model's state dict built on the meta device, so a config that does not fit its weights
    is refused before a model of its size is built."""
    missing = sorted(set(ours) - set(converted))
    unexpected = sorted(set(converted) - set(ours))
    if missing or unexpected:
        raise HFConversionError(f"{family} weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in converted.items():
        if tensor.shape != ours[name].shape:
            raise HFConversionError(
                f"{name}: {family} tensor has shape {tuple(tensor.shape)}, the model needs {tuple(ours[name].shape)}"
            )
    model = get_model(architecture, config=config)
    model.load_state_dict(converted)
    return model


def _model_shapes(architecture: str, config: GPTConfig, state_dict: dict[str, torch.Tensor], family: str) -> dict:
    """The state dict (shapes only) of the model `config` describes, once the weights hold as many blocks."""
    check_block_count(state_dict, config.n_layer, f"the {family} folder", HFConversionError)
    return meta_state_dict(architecture, config, f"the {family} folder", HFConversionError)


def from_hf_state_dict(state_dict: dict[str, torch.Tensor], config: GPTConfig) -> Decoder:
    """A Vanilla model holding the weights of a `GPT2LMHeadModel` (or `GPT2Model`) state dict."""
    ours = _model_shapes("Vanilla", config, state_dict, "GPT-2")
    converted: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")) and name not in ours:
            continue  # causal-mask buffers of older transformers versions, not weights
        key = name if name.startswith((_PREFIX, "lm_head.")) else _PREFIX + name
        converted[key] = tensor.t() if key.endswith(_CONV1D_SUFFIXES) else tensor
    converted.setdefault("lm_head.weight", converted.get(_PREFIX + "wte.weight"))
    return _checked_load("Vanilla", config, ours, converted, "GPT-2")


def to_hf_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The `GPT2LMHeadModel` state dict of a Vanilla model (biases filled with zeros when bias=False)."""
    hf_config_from_vanilla(model.config)  # refuses parts GPT-2 does not have
    exported: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        exported[name] = tensor.t().contiguous() if name.endswith(_CONV1D_SUFFIXES) else tensor.clone()
    if not model.config.bias:  # GPT-2 always has biases; zeros compute the same function
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear | nn.LayerNorm) and name != "lm_head":
                out_features = module.weight.shape[0] if isinstance(module, nn.Linear) else module.weight.numel()
                exported[f"{name}.bias"] = torch.zeros(out_features, dtype=module.weight.dtype)
    return exported


# -- Llama (Qwen2, Mistral) <-> Llama ---------------------------------------------------------------------


def _rope_theta(hf_config: dict[str, Any]) -> float:
    """The rotary base of a transformers config: `rope_parameters` (transformers 5) or `rope_theta` (4.x)."""
    parameters = hf_config.get("rope_parameters") or {}
    scaling = hf_config.get("rope_scaling") or {}
    rope_type = parameters.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if rope_type != "default":
        raise HFConversionError(f"rotary scaling {rope_type!r} is not implemented; only plain RoPE loads into Llama")
    return float(parameters.get("rope_theta", hf_config.get("rope_theta", 10000.0)))


def llama_config_from_hf(hf_config: dict[str, Any]) -> GPTConfig:
    """The Llama-preset config of a transformers Llama, Qwen2 or Mistral config (dict).

    Refuses, by name, what the preset's parts do not implement (another activation, rotary scaling, a
    head width other than n_embd / n_head, a sliding window shorter than the context).
    """
    model_type = hf_config.get("model_type", "llama")
    if model_type not in _LLAMA_FAMILY:
        raise HFConversionError(f"only {', '.join(_LLAMA_FAMILY)} checkpoints load into Llama, got {model_type!r}")
    n_embd, n_head = hf_config.get("hidden_size", 4096), hf_config.get("num_attention_heads", 32)
    block_size = hf_config.get("max_position_embeddings", 2048)
    head_dim = hf_config.get("head_dim") or n_embd // n_head
    window = hf_config.get("sliding_window") if hf_config.get("use_sliding_window", True) else None
    unsupported = {
        "hidden_act": (hf_config.get("hidden_act", "silu"), {"silu"}),
        "head_dim": (head_dim, {n_embd // n_head}),
        "sliding_window": (window, {None} | ({window} if window is not None and window >= block_size else set())),
        "pretraining_tp": (hf_config.get("pretraining_tp", 1), {1}),
    }
    for field, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise HFConversionError(f"{model_type} config has {field}={value!r}; the Llama preset supports {allowed}")
    if model_type == "qwen2":  # Qwen2: biases on q/k/v only
        bias, qkv_bias = False, True
    else:
        bias = bool(hf_config.get("attention_bias", False))
        if bool(hf_config.get("mlp_bias", False)) != bias:
            raise HFConversionError(f"{model_type} config has attention_bias={bias} but mlp_bias={not bias}")
        qkv_bias = None
    n_kv_head = hf_config.get("num_key_value_heads") or n_head
    data = {
        "model_type": "Llama",
        "vocab_size": hf_config.get("vocab_size", 32000),
        "n_layer": hf_config.get("num_hidden_layers", 32),
        "n_head": n_head,
        "n_embd": n_embd,
        "block_size": block_size,
        "bias": bias,
        "tie_embeddings": bool(hf_config.get("tie_word_embeddings", False)),
        "attention": {"n_kv_head": None if n_kv_head == n_head else n_kv_head, "qkv_bias": qkv_bias},
        "feedforward": {"ffn_hidden": hf_config.get("intermediate_size", 11008)},
        "norm": {"norm_eps": hf_config.get("rms_norm_eps", 1e-6)},
        "position": {"rope_base": _rope_theta(hf_config)},
    }
    return validate_config(GPTConfig, data, f"Llama config converted from {model_type}")


def hf_config_from_llama(config: GPTConfig | Any) -> dict[str, Any]:
    """The transformers config fields of a Llama-preset model: `llama`, or `qwen2` when only q/k/v have biases."""
    _require_parts(config, _LLAMA_PARTS, "Llama")
    attention, feedforward = config.attention, config.feedforward
    if attention.qk_norm:
        raise HFConversionError("Llama has no QK-norm: unset qk_norm")
    _refuse_inexpressible(config, "Llama")
    qkv_bias = config.bias if attention.qkv_bias is None else attention.qkv_bias
    if qkv_bias != config.bias and config.bias:
        raise HFConversionError("neither Llama nor Qwen2 has biases everywhere but on q/k/v: set qkv_bias as bias")
    qwen2 = qkv_bias and not config.bias
    ffn_hidden = feedforward.ffn_hidden or swiglu_hidden(config.n_embd, feedforward.ffn_multiple_of)
    rope_theta = config.position.rope_base
    exported = {
        "model_type": "qwen2" if qwen2 else "llama",
        "architectures": ["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": ffn_hidden,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": attention.n_kv_head or config.n_head,
        "head_dim": config.n_embd // config.n_head,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "rope_theta": rope_theta,  # what transformers 4.x reads
        "tie_word_embeddings": config.tie_embeddings,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": None,
        "eos_token_id": None,
        "dtype": "float32",
    }
    if not qwen2:
        exported |= {"attention_bias": config.bias, "mlp_bias": config.bias, "pretraining_tp": 1}
    return exported


def _llama_names(layer: str) -> dict[str, tuple[str, ...]]:
    """Our parameter name -> the Hugging Face names stacked into it, for one layer prefix."""
    ours, theirs = f"{_PREFIX}h.{layer}.", f"model.layers.{layer}."
    names: dict[str, tuple[str, ...]] = {
        f"{ours}ln_1.weight": (f"{theirs}input_layernorm.weight",),
        f"{ours}ln_2.weight": (f"{theirs}post_attention_layernorm.weight",),
    }
    for suffix in ("weight", "bias"):
        names[f"{ours}attn.c_attn.{suffix}"] = tuple(f"{theirs}self_attn.{p}_proj.{suffix}" for p in "qkv")
        names[f"{ours}attn.c_proj.{suffix}"] = (f"{theirs}self_attn.o_proj.{suffix}",)
        names[f"{ours}mlp.c_fc.{suffix}"] = (f"{theirs}mlp.gate_proj.{suffix}", f"{theirs}mlp.up_proj.{suffix}")
        names[f"{ours}mlp.c_proj.{suffix}"] = (f"{theirs}mlp.down_proj.{suffix}",)
    return names


def _llama_name_map(n_layer: int) -> dict[str, tuple[str, ...]]:
    names = {
        f"{_PREFIX}wte.weight": ("model.embed_tokens.weight",),
        f"{_PREFIX}ln_f.weight": ("model.norm.weight",),
        "lm_head.weight": ("lm_head.weight",),
    }
    for layer in range(n_layer):
        names |= _llama_names(str(layer))
    return names


def from_hf_llama_state_dict(state_dict: dict[str, torch.Tensor], config: GPTConfig) -> Decoder:
    """A Llama-preset model holding the weights of a `LlamaForCausalLM` (Qwen2, Mistral) state dict."""
    ours = _model_shapes("Llama", config, state_dict, "Llama")
    if "lm_head.weight" not in state_dict and "model.embed_tokens.weight" in state_dict:
        state_dict = {**state_dict, "lm_head.weight": state_dict["model.embed_tokens.weight"]}  # tied, left out
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, sources in _llama_name_map(config.n_layer).items():
        if name in ours and all(source in state_dict for source in sources):
            converted[name] = torch.cat([state_dict[source] for source in sources], dim=0)
            used.update(sources)
    leftover = sorted(k for k in state_dict if k not in used and not k.endswith("rotary_emb.inv_freq"))
    if leftover:
        raise HFConversionError(f"Llama weights do not fit: unexpected {leftover[:5]}")
    return _checked_load("Llama", config, ours, converted, "Llama")


def to_hf_llama_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The `LlamaForCausalLM` (or `Qwen2ForCausalLM`) state dict of a Llama-preset model."""
    hf_config = hf_config_from_llama(model.config)
    sizes = {
        "q_proj": hf_config["num_attention_heads"] * hf_config["head_dim"],
        "k_proj": hf_config["num_key_value_heads"] * hf_config["head_dim"],
        "v_proj": hf_config["num_key_value_heads"] * hf_config["head_dim"],
        "gate_proj": hf_config["intermediate_size"],
        "up_proj": hf_config["intermediate_size"],
    }
    ours = model.state_dict()
    exported: dict[str, torch.Tensor] = {}
    for name, targets in _llama_name_map(model.config.n_layer).items():
        if name not in ours:
            continue
        pieces = ours[name].split([sizes[t.split(".")[-2]] for t in targets]) if len(targets) > 1 else [ours[name]]
        exported.update({target: piece.clone() for target, piece in zip(targets, pieces, strict=True)})
    return exported


# -- Directories ---------------------------------------------------------------------------------------------


def read_hf_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a transformers model directory: model.safetensors, or the shards its index names (each a
    file of the directory: a name leading elsewhere is refused)."""
    directory = Path(directory)
    index_path = directory / "model.safetensors.index.json"
    if index_path.is_file():
        index = read_json(index_path, HFConversionError, "download or export the folder again")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(file, str) for file in weight_map.values()):
            raise HFConversionError(f"{index_path} is damaged: it needs a 'weight_map' of tensor names to file names")
        shards = sorted(set(weight_map.values()))
    elif (directory / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise HFConversionError(
            f"{str(directory)!r} has no model.safetensors; convert pickled weights with transformers first "
            "(cleanGPT never loads pickle files)"
        )
    state_dict: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = directory / shard
        if Path(shard).name != shard:
            raise HFConversionError(
                f"{index_path} names the weights file {shard!r}, which is not a file of {directory}; refusing to "
                "read it"
            )
        if path.resolve().parent != directory.resolve():
            raise HFConversionError(
                f"{path} is a link to {path.resolve()}, outside {directory}; refusing to read it: copy the weights "
                "into the folder"
            )
        read_header(path, HFConversionError)  # a pickle or a damaged file is named, never unpickled
        state_dict.update(load_file(str(path)))
    return state_dict


def load_hf_pretrained(directory: str | Path) -> Decoder:
    """A model from a directory written by transformers' `save_pretrained` (safetensors only): GPT-2 becomes
    Vanilla, Llama, Qwen2 and Mistral become Llama."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise HFConversionError(f"{str(directory)!r} has no config.json: it is not a transformers model directory")
    hf_config = json.loads(config_path.read_text(encoding="utf-8"))
    if hf_config.get("model_type") in _LLAMA_FAMILY:
        config = llama_config_from_hf(hf_config)
        return from_hf_llama_state_dict(read_hf_weights(directory), config)
    config = vanilla_config_from_hf(hf_config)
    return from_hf_state_dict(read_hf_weights(directory), config)


def save_hf_pretrained(model: nn.Module, directory: str | Path) -> Path:
    """Write `model` as a transformers directory (config.json + model.safetensors): Vanilla as GPT-2, Llama
    as Llama (or Qwen2, with q/k/v biases only).

    `AutoModelForCausalLM.from_pretrained(directory)` loads it; a head tied to the token embedding is left
    out, as transformers does. Everything is checked before anything is written.
    """
    if model.config.model_type == "Llama":
        hf_config = hf_config_from_llama(model.config)
        tensors = to_hf_llama_state_dict(model)
    elif model.config.model_type == "Vanilla":
        hf_config = hf_config_from_vanilla(model.config)
        tensors = to_hf_state_dict(model)
    else:
        raise HFConversionError(
            f"{model.config.model_type} models have no Hugging Face format; Vanilla (GPT-2) and Llama do"
        )
    if hf_config["tie_word_embeddings"]:
        tensors.pop("lm_head.weight")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_target(directory / "model.safetensors") as aside:
        save_file(tensors, str(aside), metadata={"format": "pt"})
    write_text_atomic(directory / "config.json", json.dumps(hf_config, indent=2) + "\n")
    return directory
