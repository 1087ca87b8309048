"""Registers the built-in architectures (the Vanilla and Llama presets of the decoder) and `generate`."""

from cleangpt_core.config import LlamaConfig, VanillaConfig
from cleangpt_core.plugin_api import PLUGIN_API_VERSION, CommandSpec, Component, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def cleangpt_register_architectures() -> list[Component]:
    """Vanilla (GPT-2) and Llama: presets of the one decoder, which composes the parts their configs name."""
    return [
        Component(
            name="Vanilla",
            kind="architecture",
            summary="GPT-2: learned positions, LayerNorm, GELU MLP, pre-norm, tied embeddings",
            target="cleangpt_core.model.decoder:Decoder",
            config_schema=VanillaConfig,
        ),
        Component(
            name="Llama",
            kind="architecture",
            summary="Llama: rotary positions, RMSNorm, SwiGLU, pre-norm, grouped-query attention, no biases",
            target="cleangpt_core.model.decoder:Decoder",
            config_schema=LlamaConfig,
        ),
    ]


@hookimpl
def cleangpt_register_commands() -> list[CommandSpec]:
    """`cleangpt generate`: sample text from a trained checkpoint."""
    return [
        CommandSpec(
            "generate",
            "Generate text from a checkpoint, streaming it to the terminal.",
            "cleangpt_core.cli.generate:generate",
        )
    ]
