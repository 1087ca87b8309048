"""Registers the commands that connect cleanGPT to the wider ecosystem: Hugging Face export and import, and
EleutherAI's lm-evaluation-harness."""

from cleangpt_core.plugin_api import PLUGIN_API_VERSION, CommandSpec, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def cleangpt_register_commands() -> list[CommandSpec]:
    """export, import, lm-eval and serve."""
    return [
        CommandSpec(
            "export",
            "Write a run's model and tokenizer as a Hugging Face folder (AutoModelForCausalLM loads it).",
            "cleangpt_core.cli.hf:export",
        ),
        CommandSpec(
            "import",
            "Turn a Hugging Face folder written by export back into a cleanGPT checkpoint.",
            "cleangpt_core.cli.hf:import_",
        ),
        CommandSpec(
            "lm-eval",
            "Score a checkpoint on lm-evaluation-harness tasks (needs cleangpt-core[eval]).",
            "cleangpt_core.cli.lm_eval:lm_eval",
        ),
        CommandSpec(
            "serve",
            "Serve a run over an OpenAI-compatible HTTP API with a playground page (needs cleangpt-core[serve]).",
            "cleangpt_core.cli.serve:serve",
        ),
    ]
