"""Registers the built-in architecture (Vanilla) and the `generate` command."""

from cleangpt_core.config import VanillaConfig
from cleangpt_core.plugin_api import PLUGIN_API_VERSION, CommandSpec, Component, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def cleangpt_register_architectures() -> list[Component]:
    """Vanilla, the GPT-2 style decoder."""
    return [
        Component(
            name="Vanilla",
            kind="architecture",
            summary="GPT-2 style pre-LN decoder: learned positions, fused attention, tied embeddings",
            target="cleangpt_core.model.model_Vanilla:VanillaTransformerModel",
            config_schema=VanillaConfig,
        )
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
