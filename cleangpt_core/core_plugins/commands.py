"""Registers the core's own CLI commands."""

from cleangpt_core.plugin_api import PLUGIN_API_VERSION, CommandSpec, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def cleangpt_register_commands() -> list[CommandSpec]:
    """list-components, show-config, known-answers and kernels."""
    return [
        CommandSpec(
            "list-components",
            "List installed components and broken plugins.",
            "cleangpt_core.cli.components:list_components",
        ),
        CommandSpec(
            "show-config",
            "Show a component's configuration schema and defaults.",
            "cleangpt_core.cli.components:show_config",
        ),
        CommandSpec(
            "known-answers",
            "Reproduce published findings with compare and say whether the tool agrees with each.",
            "cleangpt_core.cli.known_answers:known_answers",
        ),
        CommandSpec(
            "kernels",
            "Show, measure (--time) or clear (--clear) the host kernels chosen on this machine.",
            "cleangpt_core.cli.kernels:kernels",
        ),
    ]
