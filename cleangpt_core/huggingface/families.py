"""Which transformers model family each cleanGPT architecture becomes: one row per family.

A row knows how to turn a model of its architecture into a transformers config and state dict, and back.
Vanilla is GPT-2 and the Llama preset is Llama (or Qwen2 when only q/k/v have biases), both through
``cleangpt_core.huggingface.weights``; Qwen2 and Mistral folders import as Llama. An architecture without a row
cannot be exported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cleangpt_core.config import GPTConfig
from cleangpt_core.errors import HFConversionError
from cleangpt_core.huggingface import weights


@dataclass(frozen=True)
class HFFamily:
    """A transformers model family and the cleanGPT architecture that maps onto it."""

    architecture: str  # our registered architecture name
    model_types: tuple[str, ...]  # the transformers config.model_type values it exports as or imports from
    # (model) -> (transformers config fields, state dict as transformers names it, tied weights left out)
    to_hf: Callable[[nn.Module], tuple[dict[str, Any], dict[str, torch.Tensor]]]
    # (transformers config fields, state dict, the cleanGPT config saved at export or None) -> model
    from_hf: Callable[[dict[str, Any], dict[str, torch.Tensor], GPTConfig | None], nn.Module]
    # config -> the transformers config fields it exports as (refusing what the family cannot express)
    hf_config: Callable[[GPTConfig], dict[str, Any]]


def _gpt2_to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    tensors = {name: tensor for name, tensor in weights.to_hf_state_dict(model).items() if name != "lm_head.weight"}
    return weights.hf_config_from_vanilla(model.config), tensors


def _gpt2_from_hf(hf_config: dict[str, Any], tensors: dict[str, torch.Tensor], saved: GPTConfig | None) -> nn.Module:
    config = weights.vanilla_config_from_hf(hf_config)
    if saved is not None and not saved.bias:
        # GPT-2 always has biases; a bias-free Vanilla was exported with zeros there, which go away again
        biases = [name for name in tensors if name.endswith(".bias") and not name.endswith(".attn.bias")]
        if any(torch.count_nonzero(tensors[name]) for name in biases):
            raise HFConversionError("the folder was exported from a Vanilla without biases, but its biases are not 0")
        tensors = {name: tensor for name, tensor in tensors.items() if name not in biases}
    if saved is not None:
        config = saved  # dropout and every other field exactly as trained, not as GPT-2 spells them
    return weights.from_hf_state_dict(tensors, config)


def _llama_to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    hf_config = weights.hf_config_from_llama(model.config)
    tensors = weights.to_hf_llama_state_dict(model)
    if hf_config["tie_word_embeddings"]:
        tensors.pop("lm_head.weight")
    return hf_config, tensors


def _llama_from_hf(hf_config: dict[str, Any], tensors: dict[str, torch.Tensor], saved: GPTConfig | None) -> nn.Module:
    # the saved config keeps every field exactly as trained (dropout, an unrounded ffn_hidden, ...)
    config = saved if saved is not None else weights.llama_config_from_hf(hf_config)
    return weights.from_hf_llama_state_dict(tensors, config)


FAMILIES: tuple[HFFamily, ...] = (
    HFFamily("Vanilla", ("gpt2",), _gpt2_to_hf, _gpt2_from_hf, weights.hf_config_from_vanilla),
    HFFamily("Llama", ("llama", "qwen2", "mistral"), _llama_to_hf, _llama_from_hf, weights.hf_config_from_llama),
)


def family_for_architecture(architecture: str) -> HFFamily:
    """The family an architecture exports to, or an error naming the ones that can."""
    for family in FAMILIES:
        if family.architecture.lower() == architecture.lower():
            return family
    known = ", ".join(f"{family.architecture} (-> {family.model_types[0]})" for family in FAMILIES)
    raise HFConversionError(
        f"architecture {architecture!r} has no Hugging Face transformers counterpart, so it cannot be exported; "
        f"exportable architectures: {known}"
    )


def family_for_model_type(model_type: str) -> HFFamily:
    """The family of a transformers ``model_type``, or an error naming the ones that import."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = ", ".join(name for family in FAMILIES for name in family.model_types)
    raise HFConversionError(f"transformers model_type {model_type!r} cannot be imported; importable: {known}")
