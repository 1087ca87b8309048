"""The decoder every preset is made of: token embeddings, a position encoding, a stack of blocks, a final
norm and the output head, each block and part one of the part classes `model.factory.resolve_parts` found
for the names in the model config, before the decoder was built.

Read top-down, Vanilla's forward pass is `Decoder.forward` below and the parts it names:
`position.LearnedPositions`, `residual.PreNormBlock` (with `norm.LayerNorm`, `attention.CausalSelfAttention`
and `feedforward.MLP` inside), then the final `norm.LayerNorm` and the tied head. Llama swaps in
`position.Rotary`, `norm.RMSNorm` and `feedforward.SwiGLU`. Parameter names follow Hugging Face's GPT-2
(`transformer.wte`, `transformer.h.0.attn.c_attn`, `lm_head`), whatever the parts.

An architecture that brings its own blocks passes them
to the constructor and keeps the embeddings, learned positions, final LayerNorm and tied head.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.errors import PluginError
from cleangpt_core.model.base import CausalLanguageModel
from cleangpt_core.model.factory import PartClasses, resolve_parts
from cleangpt_core.model.kv_cache import KVCache, begin_forward
from cleangpt_core.model.linear import Linear
from cleangpt_core.model.parameter_roles import parameter_roles
from cleangpt_core.model.parametrization import base_head_dim, is_mup, scale_hidden_init, width_multiplier

__all__ = ["Decoder", "PartClasses", "residual_projection_names"]

# What a part states to name its layers that write into the residual stream, and the name that makes a layer
# one where nothing is stated (GPT-2's output projections).
RESIDUAL_PROJECTIONS = "residual_projections"
LEGACY_PROJECTION = "c_proj"


class Decoder(CausalLanguageModel):
    """A decoder-only transformer composed of the parts its config names (the `Vanilla` and `Llama` presets)."""

    accepts_final_label = True  # its loss is `causal_lm_loss`
    supports_mup = True  # `model.parametrization=mup` (init, output multiplier, attention scale: see below)

    def __init__(
        self, config: ModelConfig, blocks: Iterable[nn.Module] | None = None, parts: PartClasses | None = None
    ) -> None:
        """`parts` are the classes `get_model` resolved from `config`; built directly (`Decoder(config)`, as
        plugins of API 1.x do), the decoder resolves them itself, by the same function."""
        super().__init__()
        self.config = config
        parts = parts if parts is not None else resolve_parts(config)
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "wpe": parts.position(config),
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList(
                    blocks if blocks is not None else (parts.residual(config, i, parts) for i in range(config.n_layer))
                ),
                "ln_f": parts.norm(config),
            }
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.parameter_roles = {"weight": "head"}  # for optimizers: not a hidden matrix (Muon leaves it)
        # read once here: a pydantic config without the field answers through __getattr__, which torch.compile
        # cannot trace (a graph break in every forward of an architecture whose config lacks it, as SASP's)
        self.logit_softcap: float | None = getattr(config, "logit_softcap", None)
        # muP's output multiplier 1/m and base head width (`cleangpt_core.model.parametrization`); None: standard
        self.output_multiplier: float | None = 1.0 / width_multiplier(config) if is_mup(config) else None
        self.mup_base_head_dim: int | None = base_head_dim(config)
        if getattr(config, "tie_embeddings", True):
            self.lm_head.weight = self.transformer.wte.weight  # weight tying (Press & Wolf, 2017)
        if blocks is None:  # an architecture with its own blocks initialises once they are complete
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation, then each part's own (`init_weights`, where a part defines one).

        N(0, 0.02) weights, zero biases, and the layers that write into the residual stream (see
        `residual_projection_names`) scaled by 1/sqrt(2 * n_layer) so its variance does not grow with depth
        (GPT-2 paper, section 2.3), or zero with `zero_init_projections`, so every block starts as the identity
        (modded-nanogpt). Norm gains keep their ones. Under muP the hidden matrices are then scaled by 1/sqrt(m).
        """
        zero_projections = getattr(self.config, "zero_init_projections", False)
        projections = set(residual_projection_names(self))
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear | nn.Embedding):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
                    if getattr(module, "bias", None) is not None:
                        nn.init.zeros_(module.bias)
            for name, parameter in self.named_parameters():
                if name in projections and zero_projections:
                    nn.init.zeros_(parameter)
                elif name in projections:
                    nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))
            for module in self.modules():
                if module is not self and hasattr(module, "init_weights"):
                    module.init_weights()
        scale_hidden_init(parameter_roles(self).matrices, width_multiplier(self.config))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        logits_to_keep: int = 0,
    ) -> dict[str, torch.Tensor]:
        """Logits (B, T, vocab) and, given labels, the mean next-token loss.

        `attention_mask` (B, T) marks real tokens (1) and left padding (0); `kv_cache` continues a prefix
        decoded before; `logits_to_keep=n` computes logits for the last n positions only (0: all).
        """
        self.check_length(input_ids.size(1), kv_cache)
        # Positions count real tokens only, so a left-padded row gets the logits it gets unpadded.
        layout = begin_forward(input_ids, attention_mask, kv_cache)
        layout.mup_base_head_dim = self.mup_base_head_dim
        # Learned positions add to the embeddings; rotary and ALiBi leave them and set up the layout instead.
        x, layout = self.transformer.wpe(self.transformer.wte(input_ids), layout)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, layout, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(input_ids.size(1))
        if logits_to_keep:
            x = x[:, -logits_to_keep:, :]
        return self.head_output(self.transformer.ln_f(x), labels, attention_mask)  # lm_head, and the loss


def residual_projection_names(model: nn.Module) -> list[str]:
    """The weights (as `named_parameters` names them) of the layers that write into the residual stream.

    A part states its own with ``residual_projections``, a tuple of its layers' names (``("down",)``; dotted
    paths reach deeper; ``()`` for none), and that statement covers every layer inside it. Inside a module that
    states nothing, a layer named ``c_proj`` is one (GPT-2's name, the rule of the parts written before plugin
    API 1.6; the built-in parts state theirs). A stated name that is no layer with a weight is an error.
    """
    stated: set[int] = set()
    covered: list[str] = []  # the modules whose statement replaces the naming rule inside them
    for module_name, module in model.named_modules():
        layers = getattr(module, RESIDUAL_PROJECTIONS, None)
        if layers is None:
            continue
        if isinstance(layers, str) or not all(isinstance(layer, str) for layer in layers):
            raise PluginError(
                f"{type(module).__name__}.{RESIDUAL_PROJECTIONS} must be a tuple of layer names, got {layers!r}"
            )
        covered.append(f"{module_name}." if module_name else "")
        for layer in layers:
            weight = getattr(_submodule(module, layer), "weight", None)
            if not isinstance(weight, torch.Tensor):
                raise PluginError(
                    f"{type(module).__name__}.{RESIDUAL_PROJECTIONS} names {layer!r}, which has no weight; name "
                    "the layers (nn.Linear) whose output is added to the residual stream"
                )
            stated.add(id(weight))
    return [
        name
        for name, parameter in model.named_parameters()
        if id(parameter) in stated
        or (name.split(".")[-2:] == [LEGACY_PROJECTION, "weight"] and not any(map(name.startswith, covered)))
    ]


def _submodule(module: nn.Module, path: str) -> nn.Module:
    try:
        return module.get_submodule(path)
    except AttributeError:
        raise PluginError(
            f"{type(module).__name__}.{RESIDUAL_PROJECTIONS} names {path!r}, which is not one of its layers "
            f"({', '.join(name for name, _ in module.named_children()) or 'it has none'})"
        ) from None
