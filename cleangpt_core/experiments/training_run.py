"""The experiment runner behind ``cleangpt train`` and ``cleangpt evaluate``.

From an `ExperimentConfig` it builds the tokenizer, the data, the model, the optimizer and the trainer, trains
into the run directory and writes a sample from the final checkpoint. Everything that can be checked is
checked before anything is written or deleted: the config by its schemas, then whether it fits the data (a
context longer than the validation text fails here, not after an hour of training) and the device. Only then
does the run take its directory's lock, and, when asked to (``--overwrite``), delete an earlier run there.

``cleangpt train`` starts from the schema's defaults (`ExperimentConfig`, spelled out in
``configs/default.yaml``): a 0.8M-parameter character-level Vanilla model on the embedded Tiny Shakespeare,
2000 steps, about a minute on two CPU cores. A ``--config`` file and ``--set`` overrides change it.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from cleangpt_core.checkpoints.atomic_write import write_text_atomic
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.checkpoints.run_dir import (
    EXPERIMENT_FILE,
    TOKENIZER_DIR,
    RunDirectory,
    find_model_directory,
    find_training_checkpoint,
    run_of,
)
from cleangpt_core.config.base import flatten_config
from cleangpt_core.config.experiment import (
    AUTO_EVAL_CAP,
    AUTO_EVAL_FLOOR,
    ExperimentConfig,
    TokenizerSection,
    load_experiment_config,
    resolve_experiment,
)
from cleangpt_core.config.tracking import check_trackers_installed
from cleangpt_core.data.prepared_data import PreparedCorpus, data_fingerprint, is_prepared_dir
from cleangpt_core.data.python_stdlib import PYTHON_STDLIB
from cleangpt_core.data.windows import RandomWindowDataset
from cleangpt_core.distributed.devices import choose_device
from cleangpt_core.distributed.process_group import barrier
from cleangpt_core.errors import CheckpointError, ConfigError, DataError
from cleangpt_core.experiments.plan import tokens_per_step
from cleangpt_core.experiments.progress_lines import ProgressLines, evaluation_text
from cleangpt_core.inference.generation import run_generation
from cleangpt_core.model.base import takes_final_label
from cleangpt_core.model.factory import build_config, get_model
from cleangpt_core.model.serialization import check_tokenizer_fits, load_trained_model
from cleangpt_core.registry import get_component, load_component
from cleangpt_core.tokenizers import BaseTokenizer, create_tokenizer, from_pretrained
from cleangpt_core.trainers.base_trainer import BaseTrainer
from cleangpt_core.trainers.batches import resumable_loader
from cleangpt_core.trainers.evaluation import evaluate_model
from cleangpt_core.trainers.factory import get_trainer
from cleangpt_core.trainers.interrupts import StopRequested
from cleangpt_core.trainers.optim_factory import fit_schedule, get_optimizer, get_schedule
from cleangpt_core.trainers.precision import describe_precision
from cleangpt_core.utils import TokenBlockDataset, load_corpus_tokens

# What `train --resume` may change: budgets, cadences and what happens after training. Everything else (the
# model, the optimizer, the schedule's shape, the data) is state the checkpoint was made with; changing it on
# resume would either be silently ignored (the optimizer state restores the old learning rate) or break the
# exact continuation, so it is refused.
CHANGEABLE_ON_RESUME = (
    "device",
    "data.eval_batch_size",
    "data.eval_tokens",
    "data.num_workers",
    "trainer.max_steps",
    "trainer.num_epochs",
    "trainer.log_interval",
    "trainer.checkpoint_interval",
    "trainer.keep_checkpoints",
    "trainer.eval_interval",
    "trainer.eval_max_batches",
    "trainer.progress_bar",
    "trainer.log_metrics",
    "trainer.early_stopping_patience",
    "trainer.early_stopping_min_delta",
    "sampling",
    "output.sample_prompt",
    "output.sample_tokens",
)


def read_saved_experiment(checkpoint: Path) -> dict[str, Any]:
    """The experiment.json of a checkpoint as a dict, with an error naming the file when it is damaged."""
    path = checkpoint / EXPERIMENT_FILE
    if not path.is_file():
        raise ConfigError(f"{checkpoint} has no {EXPERIMENT_FILE}; only runs started by `cleangpt train` can resume")
    data = read_json(path, CheckpointError, "resume from another checkpoint")
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is damaged: it does not hold an experiment config")
    trainer = data.get("trainer")
    if "schedule" not in data and not (isinstance(trainer, dict) and "lr_schedule" in trainer):
        # saved before schedules were components, by a trainer that had no schedule: the lr was constant
        data["schedule"] = {"name": "constant"}
    return data


def resume_config(run: str | Path, overrides: Iterable[str] = ()) -> tuple[ExperimentConfig, Path]:
    """The config a run was started with (from its latest checkpoint) and that checkpoint.

    Overrides may change what `CHANGEABLE_ON_RESUME` lists; any other change is refused, naming every field,
    so the experiment.json a resumed run writes is always the config it really trains with.
    """
    checkpoint = find_training_checkpoint(run)
    saved_data = read_saved_experiment(checkpoint)
    where = f"experiment config {checkpoint / EXPERIMENT_FILE}"
    saved = resolve_experiment(saved_data, (), where)
    config = resolve_experiment(saved_data, tuple(overrides), where)
    before, after = flatten_config(saved.model_dump(mode="json")), flatten_config(config.model_dump(mode="json"))
    refused = [
        f"{key} ({before.get(key)!r} -> {after.get(key)!r})"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
        and not any(key == field or key.startswith(field + ".") for field in CHANGEABLE_ON_RESUME)
    ]
    if refused:
        raise ConfigError(
            f"cannot change on resume: {', '.join(refused)}; the checkpoint was made with the old values. Resume "
            f"without them, or start a new run (--set output.dir=DIR). Changeable on resume: "
            f"{', '.join(CHANGEABLE_ON_RESUME)}"
        )
    run_dir = run_of(checkpoint).root
    return config.model_copy(update={"output": config.output.model_copy(update={"dir": run_dir})}), checkpoint


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's random, so model initialisation and dropout repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class PreparedRun:
    """Everything a run trains with, built and checked."""

    config: ExperimentConfig
    tokenizer: BaseTokenizer
    model: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    trainer: BaseTrainer


def load_split(
    config: ExperimentConfig, tokenizer: BaseTokenizer, split: str, dataset: str | None = None
) -> np.ndarray:
    """The token stream of one split of the configured (or given) dataset, from the token cache."""
    data = config.data
    return load_corpus_tokens(
        dataset or data.dataset,
        tokenizer,
        split=split,
        dataset_config=data.dataset_config,
        text_field=data.text_field,
        max_samples=data.max_samples,
        val_fraction=data.val_fraction,
    )


def check_fits(config: ExperimentConfig, train_tokens: int, val_tokens: int) -> None:
    """Fail before training when a window (the context and the token after it) is longer than its data."""
    block = config.model.block_size
    for split, count in (("training", train_tokens), ("validation", val_tokens)):
        if count <= block:
            raise ConfigError(
                f"model.block_size={block} is larger than the {split} split of {config.data.dataset!r} "
                f"({count} tokens; a window takes block_size + 1): lower model.block_size, or use more data "
                "(data.val_fraction, data.dataset)"
            )


def evaluation_tokens(config: ExperimentConfig) -> int | str:
    """How many validation tokens the run's evaluations score: ``data.eval_tokens``, with 'auto' sized to the run.

    'auto' is as many as the run trains on (``trainer.max_steps`` steps of one process's batches), at least
    `AUTO_EVAL_FLOOR` and at most `AUTO_EVAL_CAP` (without max_steps, the cap). A number or 'all' is kept as set.
    """
    given = config.data.eval_tokens
    if given != "auto":
        return given
    steps = config.trainer.options.get("max_steps")
    if steps is None:
        return AUTO_EVAL_CAP
    return max(AUTO_EVAL_FLOOR, min(AUTO_EVAL_CAP, int(steps) * tokens_per_step(config)))


def head_for_evaluation(tokens: np.ndarray, eval_tokens: int | str, span: int) -> np.ndarray:
    """The head of a validation stream that scores `eval_tokens` targets ('all': the whole stream).

    Every token but the first is a target (`TokenBlockDataset`), so N targets take N + 1 tokens. `span` is one
    window's length, the fewest tokens an evaluation can take.
    """
    if eval_tokens == "all" or len(tokens) <= int(eval_tokens) + 1:
        return tokens
    if int(eval_tokens) + 1 < span:
        raise ConfigError(
            f"data.eval_tokens={eval_tokens} is shorter than one window ({span} tokens): raise it, or set 'all'"
        )
    return tokens[: int(eval_tokens) + 1]


def build_model_config(config: ExperimentConfig, vocab_size: int) -> ExperimentConfig:
    """The config with model.vocab_size set to the tokenizer's, or checked to cover it when the config sets it."""
    model = config.model
    keep = config.vocab_size_given
    if keep and model.vocab_size < vocab_size:
        raise ConfigError(
            f"model.vocab_size={model.vocab_size} is smaller than the tokenizer's vocabulary ({vocab_size}); "
            "leave it unset to take the tokenizer's"
        )
    size = model.vocab_size if keep else vocab_size
    gpt_config = build_config(model.model_type, {**model.model_dump(), "vocab_size": size})
    return config.model_copy(update={"model": gpt_config})


def initial_weights(source: str | Path, config: ExperimentConfig) -> tuple[ExperimentConfig, nn.Module, BaseTokenizer]:
    """What `train --init-from SOURCE` starts from: the model and tokenizer of SOURCE, and `config` with that
    model's config (the rest stays the recipe's).

    SOURCE is a run or checkpoint directory (which holds its tokenizer/), or a Hugging Face folder (one
    `cleangpt export` wrote, or any of a supported family with a tokenizer it can rebuild). Overrides of the
    model may only change its dropout: the weights fix everything else.
    """
    from cleangpt_core.huggingface.folder import read_hf_folder

    directory = Path(source)
    try:
        checkpoint = find_model_directory(directory)
    except CheckpointError:
        checkpoint = directory
    if (checkpoint / TOKENIZER_DIR).is_dir():
        model, tokenizer, _ = load_trained_model(checkpoint)
    else:
        model, tokenizer = read_hf_folder(directory)
    model_config = model.config.model_copy(update={"dropout": config.model.dropout})
    config = config.model_copy(update={"model": model_config, "init_from": str(source)})
    config._vocab_size_given = True  # the weights' vocabulary, whatever the tokenizer's
    return config, model, tokenizer


def prepared_tokenizer(config: ExperimentConfig) -> BaseTokenizer | None:
    """The tokenizer saved with a prepared dataset (`cleangpt prepare-data`), which a run on it adopts; None when
    the dataset is not prepared.

    A config that names another kind of tokenizer than the default is refused: its ids would not be the
    shards' (naming the prepared one, or the default, adopts it).
    """
    if not is_prepared_dir(config.data.dataset):
        return None
    tokenizer = from_pretrained(PreparedCorpus(config.data.dataset).tokenizer_dir)
    named = config.tokenizer.name
    if named.lower() != str(tokenizer.tokenizer_type).lower() and config.tokenizer != TokenizerSection():
        raise ConfigError(
            f"data.dataset={config.data.dataset} was prepared with the {tokenizer.tokenizer_type!r} tokenizer, "
            f"but tokenizer.name={named!r}: leave the tokenizer out (the run takes the prepared one), or prepare "
            f"the data again with --tokenizer {named}"
        )
    return tokenizer


def sets_warmup(overrides: Iterable[str]) -> bool:
    """Whether these overrides set the schedule's warm-up: the user chose it for this run, so a warm-up too long
    for the run is an error rather than shortened."""
    return any(override.partition("=")[0].strip() == "schedule.warmup_steps" for override in overrides)


def run_level_trainer_options(config: ExperimentConfig) -> dict[str, Any]:
    """The trainer options a run sets for all its parts: its directory, and its seed (the data order) where the
    trainer's schema has one."""
    schema = get_component("trainer", config.trainer.name).config_schema
    seeded = schema is None or "seed" in schema.model_fields
    return {"output_dir": config.output.dir, **({"seed": config.seed} if seeded else {})}


def prepare_run(
    config: ExperimentConfig,
    *,
    tokenizer: BaseTokenizer | None = None,
    callbacks: Iterable[object] = (),
    initial_model: nn.Module | None = None,
    echo: Callable[[str], None] | None = None,
    shorten_warmup: bool = True,
) -> PreparedRun:
    """Build and check the tokenizer, data, model, optimizer and trainer of `config`; nothing is written.

    model.vocab_size becomes the tokenizer's unless the config sets it on purpose (e.g. rounded up to a
    multiple of 64 for speed; a resumed run's experiment.json always does). `initial_model` (see
    `initial_weights`) gives the model its weights. A warm-up in steps longer than the run has room for is
    shortened to a share of it (`fit_schedule`) unless not `shorten_warmup` (the user set it for this run:
    `sets_warmup`); the warning goes to `echo`, or, without one, through `warnings`.
    """
    check_trackers_installed(config.logging.report_to)
    seed_everything(config.seed)
    tokenizer = (
        tokenizer or prepared_tokenizer(config) or create_tokenizer(config.tokenizer.name, **config.tokenizer.options)
    )
    train_tokens = load_split(config, tokenizer, "train")  # fits a character tokenizer's vocabulary
    val_tokens = load_split(config, tokenizer, "validation")
    check_fits(config, len(train_tokens), len(val_tokens))
    config = build_model_config(config, tokenizer.vocab_size)
    block, data = config.model.block_size, config.data
    model = get_model(config.model.model_type, config=config.model)
    if initial_model is not None:
        model.load_state_dict(initial_model.state_dict())
    final = takes_final_label(model)
    train_windows = (
        RandomWindowDataset(train_tokens, block, final)
        if data.windows == "random"
        else TokenBlockDataset(train_tokens, block, final)
    )
    train_loader = resumable_loader(train_windows, data.batch_size, num_workers=data.num_workers)
    if len(train_loader) == 0:
        raise ConfigError(
            f"data.batch_size={data.batch_size} is larger than the {len(train_windows)} training windows; lower it"
        )
    val_tokens = head_for_evaluation(val_tokens, evaluation_tokens(config), block + int(final))
    val_loader = DataLoader(
        TokenBlockDataset(val_tokens, block, final), batch_size=data.eval_batch_size or data.batch_size
    )
    fitted: dict[str, Any] = {}
    notes: list[str] = []

    def schedule(optimizer: torch.optim.Optimizer, total_steps: int | None) -> LRScheduler:
        """The configured schedule, over the run's length once the trainer knows it (a warm-up fitted to it)."""
        options, warning = fit_schedule(
            config.schedule.name,
            config.schedule.options,
            total_steps,
            shorten_warmup=shorten_warmup,
        )
        notes.extend([warning] if warning is not None else [])
        fitted.update(options)
        return get_schedule(config.schedule.name, **options)(optimizer, total_steps)

    trainer = get_trainer(
        config.trainer.name,
        model,
        train_loader,
        get_optimizer(config.optimizer.name, model, **config.optimizer.options),
        device=None if config.device == "auto" else config.device,
        lr_scheduler=schedule,
        eval_dataloader=val_loader,
        tokenizer=tokenizer,
        experiment=config,
        callbacks=list(callbacks),
        **config.trainer.options,
        **run_level_trainer_options(config),
    )
    if fitted and fitted != config.schedule.options:  # the run records the schedule it trains with
        section = type(config.schedule)(name=config.schedule.name, **fitted)
        config = config.model_copy(update={"schedule": section})
        trainer.experiment = config
    for note in notes if trainer.context.is_main else []:
        if echo is not None:
            echo(f"warning: {note}")
        else:
            warnings.warn(note, UserWarning, stacklevel=2)
    return PreparedRun(config, tokenizer, model, train_loader, val_loader, trainer)


def run_experiment(
    config: ExperimentConfig,
    *,
    resume_from: Path | None = None,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
    callbacks: Iterable[object] = (),
    init_from: str | Path | None = None,
    progress: ProgressLines | None = None,
    shorten_warmup: bool = True,
) -> dict[str, Any]:
    """Train `config` (or continue the run of `resume_from`), then sample; returns the training statistics.

    A resumed run takes its tokenizer from its checkpoint; a run started `init_from` a model (a run,
    checkpoint or Hugging Face folder) takes its weights, model config and tokenizer from it. A fresh run
    refuses a directory that holds an earlier run unless `overwrite`, and deletes that run only after every
    check has passed, under the lock. `progress` writes the run's progress lines (default: through `echo`, a
    line every ``trainer.log_interval`` steps); `shorten_warmup` as `prepare_run` takes it.

    A stop signal (Ctrl-C, SIGTERM: `cleangpt_core.trainers.interrupts`) ends the training at a step boundary
    with a checkpoint, and `StopRequested` says where.
    """
    run_dir = RunDirectory(config.output.dir)
    run_dir.check_usable()
    _refuse_an_earlier_run(run_dir, fresh=resume_from is None, overwrite=overwrite)  # before minutes of set-up
    fingerprint = data_fingerprint(config.data.dataset)
    if resume_from is not None:
        _check_same_data(run_dir, config.data.dataset, fingerprint)
    tokenizer, initial_model = None, None
    if resume_from is not None:
        tokenizer = from_pretrained(resume_from / TOKENIZER_DIR)
        check_tokenizer_fits(tokenizer.vocab_size, config.model.vocab_size, resume_from / TOKENIZER_DIR)
    elif init_from is not None:
        config, initial_model, tokenizer = initial_weights(init_from, config)
    run = prepare_run(
        config,
        tokenizer=tokenizer,
        callbacks=[*callbacks, progress or ProgressLines(echo)],
        initial_model=initial_model,
        echo=echo,
        shorten_warmup=shorten_warmup,
    )
    main, world = run.trainer.context.is_main, run.trainer.context.world_size
    lock: AbstractContextManager[None] = run_dir.lock() if main else nullcontext()
    with lock:
        if main:
            _claim(run_dir, fresh=resume_from is None, overwrite=overwrite)
            if resume_from is None and fingerprint is not None:
                record = {"dataset": str(config.data.dataset), "fingerprint": fingerprint}
                write_text_atomic(run_dir.data_record, json.dumps(record) + "\n")
        barrier(run.trainer.context)
        if main:
            params = run.model.get_num_params() if hasattr(run.model, "get_num_params") else None
            where = f"{run.trainer.device}" + (f" x {world} processes ({run.trainer.strategy})" if world > 1 else "")
            where += f" in {describe_precision(run.trainer.precision)}"
            echo(
                f"training {run.config.model.model_type} ({params:,} parameters) with the {run.config.trainer.name} "
                f"trainer on {where}, {len(run.train_loader):,} batches per epoch, into {run_dir.root}"
                + (f", resuming from {resume_from}" if resume_from is not None else "")
                + (f", starting from the weights of {init_from}" if init_from is not None else "")
            )
        try:
            stats = run.trainer.train(resume_from=resume_from)
            if not main:
                return stats
            echo(_summary(stats))
            if config.output.sample_tokens and stats["checkpoint"] is not None:
                sample = sample_from_checkpoint(Path(stats["checkpoint"]), run.config, run.trainer.device)
                write_text_atomic(run_dir.sample, sample + "\n")
                echo(f"sample ({run_dir.sample}):\n{sample}")
                stats["sample"] = sample
        except StopRequested as stop:  # the run's own checkpoints only: an earlier run here was deleted by now
            if stop.checkpoint is None and main:
                stop.checkpoint = run_dir.latest()
            raise
    return stats


def _check_same_data(run_dir: RunDirectory, dataset: Any, fingerprint: str | None) -> None:
    """Refuse to resume on data other than the run started on (a folder prepared again from another corpus or
    with another tokenizer, python-stdlib of another Python): the run would go on silently on different tokens."""
    if not run_dir.data_record.is_file():
        return  # a run on in-memory data, or one from before the record existed
    record = read_json(run_dir.data_record, CheckpointError, "delete it to resume without the check")
    recorded = record.get("fingerprint") if isinstance(record, dict) else None
    if recorded != fingerprint:
        raise DataError(
            f"data.dataset={dataset} is not the data this run started on (fingerprint {_shown(recorded)}, now "
            f"{_shown(fingerprint)}, recorded in {run_dir.data_record}): a folder prepared again, or python-stdlib of "
            "another Python; resume with the data the run trained on, or start a new run"
        )


def _shown(fingerprint: object) -> str:
    """A fingerprint as an error shows it: a prepared folder's hash cut to 12 digits; python-stdlib's whole, since
    it names the Python version."""
    text = str(fingerprint)
    return text if text.startswith(PYTHON_STDLIB) else text[:12]


def _claim(run_dir: RunDirectory, *, fresh: bool, overwrite: bool) -> None:
    """Under the lock: refuse to train over an earlier run unless asked to, and check the run's pointers."""
    _refuse_an_earlier_run(run_dir, fresh=fresh, overwrite=overwrite)  # again: one may have appeared meanwhile
    if fresh and overwrite:
        run_dir.remove_run()
    run_dir.latest(), run_dir.best()


def _refuse_an_earlier_run(run_dir: RunDirectory, *, fresh: bool, overwrite: bool) -> None:
    if fresh and not overwrite and run_dir.holds_run():
        raise ConfigError(
            f"{run_dir.root} already holds a run; continue it with --resume {run_dir.root}, train elsewhere "
            "with --set output.dir=DIR, or pass --overwrite to delete it and start afresh"
        )  # a damaged or outward pointer fails now, not at the first checkpoint


def _summary(stats: dict[str, Any]) -> str:
    """The run's last line. The final evaluation has its own progress line; only a finished run resumed, which
    evaluates without training (and so without a progress line), gives its validation loss here."""
    if stats["train_loss"] is not None:
        trained = f"last step's train loss {stats['train_loss']:.4f}, {stats['tokens_per_s']:,.0f} tokens/s"
    else:
        trained = "nothing left to train (the run had reached its budget)"
        if stats.get("val_loss") is not None:
            measured = {"loss": stats["val_loss"], "stderr": stats.get("val_stderr"), "tokens": stats.get("val_tokens")}
            trained += f", {evaluation_text(measured)}"
    return f"done: {stats['steps']} steps, {trained}; checkpoint {stats['checkpoint']}"


def sample_from_checkpoint(checkpoint: Path, config: ExperimentConfig, device: torch.device) -> str:
    """Text generated by the checkpoint's model with the configured sampler, seeded by the experiment seed."""
    model, tokenizer, _ = load_trained_model(checkpoint, map_location=device)
    model.eval()
    sampler_fn = load_component("sampler", config.sampling.name)
    options = config.sampling.options

    def sampler(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return sampler_fn(logits, generator=generator, **options)

    _, text = run_generation(
        model,
        tokenizer,
        config.output.sample_prompt,
        device=device,
        max_new_tokens=config.output.sample_tokens,
        sampler=sampler,
        seed=config.seed,
    )
    return text


def evaluate_checkpoint(
    path: str | Path,
    *,
    dataset: str | None = None,
    split: str = "validation",
    batch_size: int | None = None,
    device: str = "auto",
    max_tokens: int | str | None = None,
) -> dict[str, Any]:
    """Loss and perplexity of a checkpoint on a split of its run's dataset (or of `dataset`).

    It scores the head of the split: `max_tokens` targets ('all': every one; None: as many as the run's final
    evaluation, `evaluation_tokens`). The result's ``tokens`` says how many were scored, ``split_tokens`` how
    many the split holds, ``stderr`` the loss's standard error.
    """
    chosen = choose_device(device)
    model, tokenizer, checkpoint = load_trained_model(path, map_location=chosen)
    saved = checkpoint / EXPERIMENT_FILE
    if saved.is_file():
        config = resolve_experiment(read_saved_experiment(checkpoint), (), f"experiment config {saved}")
    elif dataset is None:
        raise ConfigError(f"{checkpoint} has no {EXPERIMENT_FILE} naming its data; pass --data")
    else:
        config = load_experiment_config()
    tokens = load_split(config, tokenizer, split, dataset)
    block = model.config.block_size
    if len(tokens) < block:
        raise ConfigError(f"the {split} split holds {len(tokens)} tokens, fewer than the model's block_size={block}")
    final = takes_final_label(model)
    scored = head_for_evaluation(tokens, max_tokens or evaluation_tokens(config), block + int(final))
    windows = TokenBlockDataset(scored, block, final)
    loader = DataLoader(windows, batch_size=batch_size or config.data.batch_size)
    metrics = evaluate_model(model, loader, chosen)
    return {
        "checkpoint": str(checkpoint),
        "split": split,
        "dataset": dataset or config.data.dataset,
        **metrics,
        "split_tokens": len(tokens) - 1,
    }
