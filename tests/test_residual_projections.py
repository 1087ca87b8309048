"""Which layers get GPT-2's scaled initialisation is stated by the parts (`residual_projections`), with a layer
named `c_proj` the default where a part states nothing; every existing model initialises bitwise as before."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cleangpt_core.errors import PluginError
from cleangpt_core.model import Decoder, Linear, get_model
from cleangpt_core.model.decoder import residual_projection_names
from cleangpt_core.model.parameter_roles import parameter_roles
from cleangpt_core.model.parametrization import scale_hidden_init, width_multiplier
from cleangpt_core.plugin_api import PART_KINDS
from cleangpt_core.registry import BUILTIN_DISTRIBUTION, get_registry

SIZE = {"vocab_size": 61, "n_layer": 3, "n_head": 4, "n_embd": 32, "block_size": 16}
MODELS = [
    *[
        (preset, {kind: component.name})
        for preset in ("Vanilla", "Llama")
        for kind in PART_KINDS
        for component in get_registry().components(kind)
        if component.distribution == BUILTIN_DISTRIBUTION
    ],
    ("Vanilla", {"zero_init_projections": True}),
    ("Llama", {"parametrization": "mup", "mup_base_width": 16}),
    ("SASP", {}),
    ("SASP", {"use_v": True, "use_proj": True}),
]


def gpt2_rule_by_name(model: Decoder) -> None:
    """The initialisation as it was before parts stated their projections: by the name `c_proj` alone."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for name, parameter in model.named_parameters():
            if name.endswith("c_proj.weight") and getattr(model.config, "zero_init_projections", False):
                nn.init.zeros_(parameter)
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * model.config.n_layer))
        for module in model.modules():
            if module is not model and hasattr(module, "init_weights"):
                module.init_weights()
    scale_hidden_init(parameter_roles(model).matrices, width_multiplier(model.config))


@pytest.mark.parametrize(("preset", "options"), MODELS)
def test_every_existing_model_initialises_bitwise_as_by_the_name_rule(preset, options):
    model = get_model(preset, **SIZE, **options)
    torch.manual_seed(7)
    model.reset_parameters()
    stated = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    torch.manual_seed(7)
    gpt2_rule_by_name(model)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, stated[name]), name


def test_the_built_in_parts_state_their_output_projections():
    model = get_model("Llama", **SIZE)
    assert residual_projection_names(model) == [
        f"transformer.h.{i}.{part}.c_proj.weight" for i in range(SIZE["n_layer"]) for part in ("attn", "mlp")
    ]


class StatedMLP(nn.Module):
    """A feed-forward part whose output layer is `down`; its `c_proj` is an inner layer, not an output."""

    residual_projections = ("down",)

    def __init__(self, config, *_args) -> None:
        super().__init__()
        self.c_proj = Linear(config.n_embd, 4 * config.n_embd)
        self.down = Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.down(self.c_proj(x).relu())


class UnstatedMLP(StatedMLP):
    """The same part as written before parts stated anything: its `c_proj` is taken for the output."""

    residual_projections = None


def decoder_with(feedforward: type[nn.Module], **options) -> Decoder:
    """A Vanilla model whose blocks hold `feedforward` as their MLP, initialised as the decoder does."""
    vanilla = get_model("Vanilla", **{**SIZE, **options})
    for block in vanilla.transformer.h:
        block.mlp = feedforward(vanilla.config)
    model = Decoder(vanilla.config, vanilla.transformer.h)
    model.reset_parameters()
    return model


def test_a_part_states_which_of_its_layers_write_into_the_residual_stream():
    model = decoder_with(StatedMLP, zero_init_projections=True)
    for block in model.transformer.h:
        assert torch.count_nonzero(block.mlp.down.weight) == 0  # stated: zero, every block starts as the identity
        assert torch.count_nonzero(block.mlp.c_proj.weight) == block.mlp.c_proj.weight.numel()  # not an output
        assert torch.count_nonzero(block.attn.c_proj.weight) == 0  # the built-in attention states its c_proj

    torch.manual_seed(0)
    scaled = decoder_with(StatedMLP)
    down = torch.cat([block.mlp.down.weight.flatten() for block in scaled.transformer.h])
    inner = torch.cat([block.mlp.c_proj.weight.flatten() for block in scaled.transformer.h])
    assert down.std().item() == pytest.approx(0.02 / math.sqrt(2 * 3), rel=0.05)
    assert inner.std().item() == pytest.approx(0.02, rel=0.05)


def test_a_part_that_states_nothing_keeps_the_c_proj_rule():
    model = decoder_with(UnstatedMLP, zero_init_projections=True)
    for block in model.transformer.h:
        assert torch.count_nonzero(block.mlp.c_proj.weight) == 0
        assert torch.count_nonzero(block.mlp.down.weight) == block.mlp.down.weight.numel()


@pytest.mark.parametrize(
    ("stated", "message"),
    [
        (("out",), r"StatedMLP.residual_projections names 'out', which is not one of its layers \(c_proj, down\)"),
        ("down", r"must be a tuple of layer names, got 'down'"),
    ],
)
def test_a_statement_naming_no_layer_is_an_error_naming_it(stated, message):
    broken = type("StatedMLP", (StatedMLP,), {"residual_projections": stated})
    with pytest.raises(PluginError, match=message):
        decoder_with(broken)
