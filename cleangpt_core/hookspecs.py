"""The hooks of cleanGPT: the reference for plugin authors.

A plugin is a module, named by an entry point in the group ``cleangpt``::

    [project.entry-points.cleangpt]
    sasp = "cleangpt_sasp.plugin"

that states ``CLEANGPT_PLUGIN_API = "1.0"`` and implements any of the hooks below with
``@cleangpt_core.plugin_api.hookimpl``. The core's own components are registered by the very same hooks
(``cleangpt_core.builtins``), so a built-in has no privilege but one: on a name clash it wins.

Registration hooks are called once per process, the first time the registry is needed, and must be cheap:
return descriptions (`Component`), import nothing heavy (no torch), and let each ``target`` point at the
module that does. A hook that raises is reported with its plugin and skipped (set ``CLEANGPT_STRICT_PLUGINS=1``
to re-raise instead). Hooks grow only by new optional arguments, which an implementation may leave out
of its signature (pluggy passes an implementation just the arguments it names), so a plugin written for an
older minor version keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cleangpt_core.plugin_api import hookspec

if TYPE_CHECKING:
    from cleangpt_core.plugin_api import CommandSpec, Component


@hookspec
def cleangpt_register_tokenizers() -> list[Component]:
    """Describe the tokenizers this plugin provides.

    Called: once, when the registry is first built (``create_tokenizer``, ``cleangpt list-components``).

    Returns: a list of ``Component(kind="tokenizer", ...)`` whose ``target`` is a ``BaseTokenizer``
    subclass and whose ``config_schema`` (optional) is a pydantic model of its constructor options.
    """


@hookspec
def cleangpt_register_architectures() -> list[Component]:
    """Describe the model architectures this plugin provides.

    Called: once, when the registry is first built (``get_model``, ``GPTConfig`` validation,
    ``cleangpt list-components``).

    Returns: a list of ``Component(kind="architecture", ...)`` whose ``target`` is an ``nn.Module`` class
    built as ``cls(config)`` and whose ``config_schema`` is a subclass of
    ``cleangpt_core.config.ModelConfig`` holding the architecture's own fields.
    """


@hookspec
def cleangpt_register_trainers() -> list[Component]:
    """Describe the training strategies this plugin provides.

    Called: once, when the registry is first built (``get_trainer``, ``cleangpt list-components``).

    Returns: a list of ``Component(kind="trainer", ...)`` whose ``target`` is a ``BaseTrainer`` subclass
    and whose ``config_schema`` is a pydantic model of its options.
    """


@hookspec
def cleangpt_register_samplers() -> list[Component]:
    """Describe the next-token samplers this plugin provides.

    Called: once, when the registry is first built (``get_sampling_fn``, ``cleangpt list-components``).

    Returns: a list of ``Component(kind="sampler", ...)`` whose ``target`` is a function
    ``fn(logits, *, generator=None, **params) -> LongTensor`` mapping logits (B, V) to next-token ids
    (B, 1), and whose ``config_schema`` is a pydantic model of ``params``.
    """


@hookspec
def cleangpt_register_commands() -> list[CommandSpec]:
    """Describe the CLI commands this plugin adds to ``cleangpt``.

    Called: once, when the ``cleangpt`` command line starts. Only the names and summaries are read then;
    a command's ``target`` (a ``click.Command``) is imported when that command runs, so a plugin's
    imports never slow down ``cleangpt --help``.

    Returns: a list of ``CommandSpec``. A name already taken by a core command is reported and skipped.
    """
