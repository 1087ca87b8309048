"""The hooks of cleanGPT: the reference for plugin authors.

A plugin is a module, named by an entry point in the group ``cleangpt``::

    [project.entry-points.cleangpt]
    sasp = "cleangpt_sasp.plugin"

that states ``CLEANGPT_PLUGIN_API = "1.6"`` (the version it was written for; plugins stating ``"1.0"``, which
has no part hooks, ``"1.1"``, which has no optimizer and schedule hooks, ``"1.2"``, which predates the
exported ``cleangpt_core.model.Linear``, or ``"1.3"``, whose part options were bare fields of the model config,
keep working) and implements any of
the hooks below with ``@cleangpt_core.plugin_api.hookimpl``. The core's own components are registered by the
very same hooks (``cleangpt_core.core_plugins``), so a built-in has no privilege but one: on a name clash it wins.

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


# -- Parts of the built-in decoder (plugin API 1.1) ---------------------------------------------------------
# The decoder behind the presets (`Vanilla`, `Llama`) composes one part of each kind, named in the model config
# (``--set model.attention=NAME``). A part's ``config_schema`` (a pydantic model) declares its options: they
# sit in the part's own section (``model.attention: {name: NAME, option: value}``), are validated against the
# chosen part's schema when the config is (plugin API 1.4), and reach the part alone: it is built from a
# ``PartConfig`` (the model config with its own options in front) and reads them with
# ``cleangpt_core.model.part_options(config, Schema)``. A bare option name (``--set model.option=value``)
# still works, as a shorthand for every chosen part declaring it. A schema's validators see the model config
# as ``info.context["model"]``. The ``target`` is an ``nn.Module`` class; its interface per
# kind is stated below and in ``docs/writing-plugins.md``. A part may define ``init_weights()``, called after
# the decoder's GPT-2 initialisation, for the initialisation it needs (zeros, gains), and states the layers
# whose output is added to the residual stream as ``residual_projections = ("c_proj",)`` (plugin API 1.6): they
# start at GPT-2's N(0, 0.02 / sqrt(2 * n_layer)), or zero under ``zero_init_projections``. A part that states
# nothing has its layers named ``c_proj`` taken for them.


@hookspec
def cleangpt_register_attention() -> list[Component]:
    """Describe the attention parts this plugin provides.

    Called: once, when the registry is first built (model config validation, ``cleangpt list-components``).

    Returns: a list of ``Component(kind="attention", ...)`` whose ``target`` is built as
    ``cls(config, layer_index)`` and called as ``attn(x, layout, kv_cache) -> y`` with x and y (B, T, n_embd).
    It applies ``layout.rotate(q, k)`` to its queries and keys (rotary positions), stores its keys and values
    with ``kv_cache.update(layer_index, k, v)`` when a cache is given, and attends with ``layout.attend(q, k,
    v)`` or under ``layout.visible(...)`` and ``layout.bias`` (masking, padding, ALiBi): then every position
    encoding, the cache and left padding work with it.
    """


@hookspec
def cleangpt_register_feedforward() -> list[Component]:
    """Describe the feed-forward (MLP) parts this plugin provides.

    Called: once, when the registry is first built.

    Returns: a list of ``Component(kind="feedforward", ...)`` whose ``target`` is built as ``cls(config)`` and
    called as ``mlp(x) -> y``, both (B, T, n_embd), acting on each position alone.
    """


@hookspec
def cleangpt_register_norms() -> list[Component]:
    """Describe the normalisation parts this plugin provides.

    Called: once, when the registry is first built.

    Returns: a list of ``Component(kind="norm", ...)`` whose ``target`` is built as ``cls(config)`` and called
    as ``norm(x) -> y``, both (B, T, n_embd). The decoder uses it in every block and before the output head.
    """


@hookspec
def cleangpt_register_positions() -> list[Component]:
    """Describe the position encodings this plugin provides.

    Called: once, when the registry is first built.

    Returns: a list of ``Component(kind="position", ...)`` whose ``target`` is built as ``cls(config)`` and
    called once per forward as ``position(x, layout) -> (x, layout)``: it may add to the token embeddings x
    (learned positions, read from ``layout.positions``, which count real tokens only) and may return the
    layout with ``rotary`` (cos, sin) or an additive score ``bias`` set, which attention parts apply.
    """


@hookspec
def cleangpt_register_residuals() -> list[Component]:
    """Describe the residual wirings (blocks) this plugin provides.

    Called: once, when the registry is first built.

    Returns: a list of ``Component(kind="residual", ...)`` whose ``target`` is built as
    ``cls(config, layer_index, parts)`` and called as ``block(x, layout, kv_cache) -> x``. ``parts`` holds
    the chosen part classes (``parts.attention``, ``parts.feedforward``, ``parts.norm``), each bound to its
    options: the block builds its sub-blocks from them, passing on the ``config`` it got, and wires them
    (pre-norm, parallel, post-norm...).
    """


# -- Optimizers and learning-rate schedules (plugin API 1.2) -------------------------------------------------
# Chosen by the experiment config's ``optimizer: {name: ...}`` and ``schedule: {name: ...}`` sections, whose other
# keys are validated against the component's ``config_schema`` before any work starts.


@hookspec
def cleangpt_register_optimizers() -> list[Component]:
    """Describe the optimizers this plugin provides.

    Called: once, when the registry is first built (experiment config validation, ``cleangpt list-components``).

    Returns: a list of ``Component(kind="optimizer", ...)`` whose ``target`` is a function
    ``build(roles, **options) -> torch.optim.Optimizer``. ``roles`` is the model's
    ``cleangpt_core.trainers.optimizers.ParameterRoles``: its trainable parameters sorted into hidden
    ``matrices``, ``embeddings``, an untied ``head`` and ``gains`` (norm gains, biases: never decayed), as the
    model and its parts state them; ``options`` are the fields of the ``config_schema``. The optimizer must
    keep its whole state in ``state_dict()`` (torch's format), so a run resumes it exactly. Under muP
    (``roles.mup_width_multiplier`` not None) only a builder with ``build.applies_mup = True`` is used; see
    docs/mup.md.
    """


@hookspec
def cleangpt_register_schedules() -> list[Component]:
    """Describe the learning-rate schedules this plugin provides.

    Called: once, when the registry is first built.

    Returns: a list of ``Component(kind="schedule", ...)`` whose ``target`` is a function
    ``build(optimizer, *, total_steps, **options) -> torch.optim.lr_scheduler.LRScheduler``, stepped once per
    optimizer step. ``total_steps`` is the run's length in optimizer steps (None when the data has no length
    and no ``max_steps`` is set), so a schedule can be stated relative to the run. Its ``state_dict()`` must
    hold all it needs to resume (a ``LambdaLR`` over a callable object with plain attributes does).
    """


@hookspec
def cleangpt_register_commands() -> list[CommandSpec]:
    """Describe the CLI commands this plugin adds to ``cleangpt``.

    Called: once, when the ``cleangpt`` command line starts. Only the names and summaries are read then;
    a command's ``target`` (a ``click.Command``) is imported when that command runs, so a plugin's
    imports never slow down ``cleangpt --help``.

    Returns: a list of ``CommandSpec``. A name already taken by a core command is reported and skipped.
    """


# -- Training events ------------------------------------------------------------------------------------
# Called by every trainer built on ``BaseTrainer``, in every process of a torchrun job (check
# ``trainer.context.is_main`` before writing files). They are observers: the return value is ignored, and an
# implementation that raises is reported with a warning and receives no further events in that run, so a
# broken plugin never stops training. A callback object passed as ``get_trainer(..., callbacks=[obj])``
# receives the same events through methods named ``on_train_begin`` and so on, with the same arguments.


@hookspec
def cleangpt_on_train_begin(trainer: object) -> None:
    """Training starts, or resumes.

    Called: once per ``trainer.train()``, before the first step (after a checkpoint to resume from is loaded).

    ``trainer``: the running ``BaseTrainer``: ``trainer.output_dir`` is the run directory (or None),
    ``trainer.progress`` holds step, epoch and tokens seen (the step it resumes from), ``trainer.options``
    the validated options.

    Returns: nothing (ignored).
    """


@hookspec
def cleangpt_on_train_end(trainer: object, stats: dict) -> None:
    """Training ended: the step budget is spent, the epochs are done, early stopping or a callback stopped it.

    Called: once per ``trainer.train()``, after the final evaluation and checkpoint; not when training fails
    (a NaN loss raises before it).

    ``trainer``: the running ``BaseTrainer``. ``stats``: the dict ``train()`` returns (steps, tokens,
    losses, tokens_per_s, val_loss, checkpoint, stop_reason...).

    Returns: nothing (ignored).
    """


@hookspec
def cleangpt_on_epoch_begin(trainer: object, epoch: int) -> None:
    """An epoch (a pass over the training data) starts.

    Called: at the start of every epoch, also when a resumed run re-enters an epoch in its middle.

    ``trainer``: the running ``BaseTrainer``. ``epoch``: its number, counting from 0.

    Returns: nothing (ignored).
    """


@hookspec
def cleangpt_on_epoch_end(trainer: object, epoch: int) -> None:
    """An epoch went through all of its batches.

    Called: after the last step of each complete epoch (not when the step budget ends an epoch early).

    ``trainer``: the running ``BaseTrainer``. ``epoch``: the number of the epoch that ended, from 0.

    Returns: nothing (ignored).
    """


@hookspec
def cleangpt_on_step_begin(trainer: object, step: int) -> None:
    """An optimizer step is about to run its forward and backward passes.

    Called: before every optimizer step.

    ``trainer``: the running ``BaseTrainer``. ``step``: the number of the step, counting from 1.

    Returns: nothing (ignored).
    """


@hookspec
def cleangpt_on_step_end(trainer: object, step: int, metrics: dict) -> None:
    """An optimizer step is done.

    Called: after every optimizer step, before the periodic evaluation or checkpoint of that step.

    ``trainer``: the running ``BaseTrainer``. ``step``: the number of the step, from 1. ``metrics``:
    ``loss`` (mean over the step's tokens, all processes), ``lr`` (the rate the step used),
    ``tokens_per_s`` and ``step_time_s`` (over the steps since the last logging step), ``tokens`` (seen so
    far), ``epoch`` and, when the trainer clips gradients, ``grad_norm`` (the global gradient norm before
    clipping). The built-in trainers keep ``loss`` and ``grad_norm`` on the device and read them back on
    logging, evaluation and checkpoint steps, and time the steps on logging steps; on other steps, reading one
    of these waits for the device (harmless on a CPU, a stall per step on a GPU).

    Returns: nothing (ignored).
    """


@hookspec
def cleangpt_on_evaluation_begin(trainer: object, step: int) -> None:
    """An evaluation on validation data starts.

    Called: by ``trainer.evaluate()``: every ``eval_interval`` steps, at the end of training, and whenever a
    user calls it.

    ``trainer``: the running ``BaseTrainer``. ``step``: the optimizer steps taken so far.

    Returns: nothing (ignored).
    """


@hookspec
def cleangpt_on_evaluation_end(trainer: object, step: int, metrics: dict) -> None:
    """An evaluation finished.

    Called: at the end of every ``trainer.evaluate()``.

    ``trainer``: the running ``BaseTrainer``. ``step``: the optimizer steps taken so far. ``metrics``:
    ``loss`` (mean cross-entropy per predicted token), ``perplexity`` (``exp(loss)``), ``tokens`` (how
    many tokens were predicted) and ``stderr`` (the loss's standard error over the batches; None from one).

    Returns: nothing (ignored).
    """


@hookspec
def cleangpt_on_checkpoint_saved(trainer: object, step: int, path: object) -> None:
    """A checkpoint was written completely, and the run's ``latest`` file names it.

    Called: every ``checkpoint_interval`` steps and at the end of training; in every process, after rank 0
    wrote it.

    ``trainer``: the running ``BaseTrainer``. ``step``: the optimizer step it holds. ``path``: its
    directory (a ``pathlib.Path``).

    Returns: nothing (ignored).
    """
