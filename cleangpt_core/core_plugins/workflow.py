"""Registers the research-workflow commands (new-plugin, compare, ablate)."""

from cleangpt_core.plugin_api import PLUGIN_API_VERSION, CommandSpec, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def cleangpt_register_commands() -> list[CommandSpec]:
    """new-plugin, compare, ablate and inspect."""
    return [
        CommandSpec(
            "new-plugin",
            "Write a new plugin project (architecture, tokenizer, trainer or sampler) to start from.",
            "cleangpt_core.cli.new_plugin:new_plugin",
        ),
        CommandSpec(
            "compare",
            "Train several architectures or configs on the same data and budget; report the comparison.",
            "cleangpt_core.cli.compare:compare",
        ),
        CommandSpec(
            "ablate",
            "Train a config and each of its levers switched over seeds; report each lever's effect with its interval.",
            "cleangpt_core.cli.ablate:ablate",
        ),
        CommandSpec(
            "inspect",
            "Show per-token loss, the logit lens and attention maps of a prompt (PNGs and JSON).",
            "cleangpt_core.cli.inspect:inspect",
        ),
    ]
