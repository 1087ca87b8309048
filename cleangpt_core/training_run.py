"""The experiment runner behind ``cleangpt train`` and ``cleangpt evaluate``.

From an `ExperimentConfig` it builds the tokenizer, the data, the model, the optimizer and the trainer, trains
into the run directory and writes a sample from the final checkpoint. Everything that can be checked is
checked before the first step: the config by its schemas, and then whether it fits the data (a context longer
than the validation text fails here, not after an hour of training).

``cleangpt train`` starts from `DEFAULT_RECIPE` (also shipped as ``configs/default.yaml``): a 0.8M-parameter
character-level Vanilla model on the embedded Tiny Shakespeare, 2000 steps, about two minutes on two CPU
cores. A ``--config`` file and ``--set`` overrides change it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cleangpt_core.config.base import validate_config
from cleangpt_core.config.experiment import ExperimentConfig, apply_overrides, read_config_file
from cleangpt_core.errors import ConfigError
from cleangpt_core.inference.generation import run_generation
from cleangpt_core.model.factory import build_config, get_model
from cleangpt_core.model.serialization import load_model, resolve_checkpoint
from cleangpt_core.registry import load_component
from cleangpt_core.tokenizers import BaseTokenizer, create_tokenizer, from_pretrained
from cleangpt_core.trainers.base_trainer import BaseTrainer, find_checkpoint
from cleangpt_core.trainers.devices import choose_device
from cleangpt_core.trainers.evaluation import evaluate_model
from cleangpt_core.trainers.factory import get_trainer
from cleangpt_core.trainers.windows import RandomWindowDataset
from cleangpt_core.utils import TokenBlockDataset, load_corpus_tokens

EXPERIMENT_FILE = "experiment.json"
TOKENIZER_DIR = "tokenizer"
SAMPLE_FILE = "sample.txt"

# nanoGPT's shakespeare_char CPU model and schedule, at twice its learning rate and a third more tokens per
# step: 1.75 validation loss in 2000 steps instead of nanoGPT's 1.91 (benchmarks/bench_quality.py).
DEFAULT_RECIPE: dict[str, Any] = {
    "seed": 1337,
    "data": {"dataset": "tinyshakespeare", "batch_size": 16, "windows": "random"},
    "tokenizer": {"name": "character"},
    "model": {"model_type": "Vanilla", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0},
    "optimizer": {"lr": 2e-3, "betas": [0.9, 0.99], "weight_decay": 0.1},
    "trainer": {
        "name": "advanced",
        "num_epochs": 10,
        "max_steps": 2000,
        "lr_schedule": "cosine",
        "warmup_steps": 100,
        "min_lr_ratio": 0.1,
        "grad_clip": 1.0,
        "eval_interval": 250,
        "eval_max_batches": 50,
        "checkpoint_interval": 500,
    },
    "sampling": {"name": "combined", "temperature": 0.8, "top_k": 40},
    "output": {"dir": "runs/default", "sample_prompt": "\n", "sample_tokens": 300},
}


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` with `update` laid over it, section by section."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_run_config(
    config_file: str | Path | None = None, overrides: Iterable[str] = ()
) -> tuple[ExperimentConfig, bool]:
    """The default recipe, then the config file, then the ``--set`` overrides, validated as one config.

    Choosing another component by a section's ``name`` (``--set trainer.name=simple``) drops the recipe's
    options of that section, so the component gets its own defaults rather than options meant for another.
    The model section is kept when ``model_type`` changes: its shape fields are shared by every architecture.
    Returns the config and whether it sets ``model.vocab_size`` (otherwise the tokenizer's is used).
    """
    data = read_config_file(config_file) if config_file is not None else {}
    data = apply_overrides(data, list(overrides))
    recipe = {
        section: value
        for section, value in DEFAULT_RECIPE.items()
        if not (isinstance(value, dict) and _renames_component(value, data.get(section)))
    }
    config = validate_config(ExperimentConfig, deep_merge(recipe, data), "experiment config")
    model_section = data.get("model")
    return config, isinstance(model_section, dict) and "vocab_size" in model_section


def _renames_component(recipe_section: dict[str, Any], given: Any) -> bool:
    return (
        isinstance(given, dict)
        and "name" in given
        and "name" in recipe_section
        and str(given["name"]).lower() != str(recipe_section["name"]).lower()
    )


def resume_config(run: str | Path, overrides: Iterable[str] = ()) -> tuple[ExperimentConfig, Path]:
    """The config a run was started with (from its latest checkpoint), with overrides, and that checkpoint."""
    checkpoint = find_checkpoint(run)
    saved = checkpoint / EXPERIMENT_FILE
    if not saved.is_file():
        raise ConfigError(f"{checkpoint} has no {EXPERIMENT_FILE}; only runs started by `cleangpt train` can resume")
    data = apply_overrides(read_json_config(saved), list(overrides))
    config = validate_config(ExperimentConfig, data, f"experiment config {saved}")
    run_dir = checkpoint.parent.parent
    return config.model_copy(update={"output": config.output.model_copy(update={"dir": run_dir})}), checkpoint


def read_json_config(path: Path) -> dict[str, Any]:
    """An experiment.json as a dict."""
    return json.loads(path.read_text(encoding="utf-8"))


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
    """Fail before training when the context is longer than the data it must be cut from."""
    block = config.model.block_size
    for split, count in (("training", train_tokens), ("validation", val_tokens)):
        if count < block:
            raise ConfigError(
                f"model.block_size={block} is larger than the {split} split of {config.data.dataset!r} "
                f"({count} tokens): lower model.block_size, or use more data (data.val_fraction, data.dataset)"
            )


def build_model_config(config: ExperimentConfig, vocab_size: int, keep_vocab_size: bool) -> ExperimentConfig:
    """The config with model.vocab_size set to the tokenizer's, or checked to cover it when it is kept."""
    model = config.model
    if keep_vocab_size and model.vocab_size < vocab_size:
        raise ConfigError(
            f"model.vocab_size={model.vocab_size} is smaller than the tokenizer's vocabulary ({vocab_size}); "
            "leave it unset to take the tokenizer's"
        )
    size = model.vocab_size if keep_vocab_size else vocab_size
    gpt_config = build_config(model.model_type, {**model.model_dump(), "vocab_size": size})
    return config.model_copy(update={"model": gpt_config})


def make_optimizer(config: ExperimentConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW over the model's parameter groups (no weight decay on gains, norms and biases)."""
    settings = config.optimizer
    groups = (
        model.optimizer_groups(settings.weight_decay)
        if hasattr(model, "optimizer_groups")
        else [{"params": list(model.parameters()), "weight_decay": settings.weight_decay}]
    )
    # the fused kernel updates every tensor in one pass: a few percent faster per step on CPU and CUDA
    return torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas, eps=settings.eps, fused=True)


def prepare_run(
    config: ExperimentConfig,
    *,
    tokenizer: BaseTokenizer | None = None,
    keep_vocab_size: bool = False,
    callbacks: Iterable[object] = (),
) -> PreparedRun:
    """Build and check the tokenizer, data, model, optimizer and trainer of `config`.

    model.vocab_size becomes the tokenizer's unless `keep_vocab_size` (a config that sets it on purpose,
    e.g. rounded up to a multiple of 64 for speed, or a resumed run's).
    """
    trainer_options = config.trainer.options
    if trainer_options.get("output_dir") is not None:
        raise ConfigError("set the run directory with output.dir, not trainer.output_dir")
    seed_everything(config.seed)
    tokenizer = tokenizer or create_tokenizer(config.tokenizer.name, **config.tokenizer.options)
    train_tokens = load_split(config, tokenizer, "train")  # fits a character tokenizer's vocabulary
    val_tokens = load_split(config, tokenizer, "validation")
    check_fits(config, len(train_tokens), len(val_tokens))
    config = build_model_config(config, tokenizer.vocab_size, keep_vocab_size)
    block, data = config.model.block_size, config.data
    train_windows = (
        RandomWindowDataset(train_tokens, block) if data.windows == "random" else TokenBlockDataset(train_tokens, block)
    )
    train_loader = DataLoader(
        train_windows, batch_size=data.batch_size, shuffle=True, drop_last=True, num_workers=data.num_workers
    )
    if len(train_loader) == 0:
        raise ConfigError(
            f"data.batch_size={data.batch_size} is larger than the {len(train_windows)} training windows; lower it"
        )
    val_loader = DataLoader(TokenBlockDataset(val_tokens, block), batch_size=data.eval_batch_size or data.batch_size)
    model = get_model(config.model.model_type, config=config.model)
    trainer = get_trainer(
        config.trainer.name,
        model,
        train_loader,
        make_optimizer(config, model),
        device=None if config.device == "auto" else config.device,
        eval_dataloader=val_loader,
        tokenizer=tokenizer,
        experiment=config,
        callbacks=list(callbacks),
        **{**trainer_options, "output_dir": config.output.dir},
    )
    return PreparedRun(config, tokenizer, model, train_loader, val_loader, trainer)


def run_experiment(
    config: ExperimentConfig,
    *,
    resume_from: Path | None = None,
    keep_vocab_size: bool = False,
    echo: Callable[[str], None] = print,
    callbacks: Iterable[object] = (),
) -> dict[str, Any]:
    """Train `config` (or continue the run of `resume_from`), then sample; returns the training statistics.

    A resumed run takes its tokenizer and vocabulary size from its checkpoint.
    """
    tokenizer = from_pretrained(resume_from / TOKENIZER_DIR) if resume_from is not None else None
    keep_vocab_size = keep_vocab_size or resume_from is not None
    run = prepare_run(config, tokenizer=tokenizer, keep_vocab_size=keep_vocab_size, callbacks=callbacks)
    main, world = run.trainer.context.is_main, run.trainer.context.world_size
    if main:
        params = run.model.get_num_params() if hasattr(run.model, "get_num_params") else None
        where = f"{run.trainer.device}" + (f" x {world} processes ({run.trainer.strategy})" if world > 1 else "")
        echo(
            f"training {run.config.model.model_type} ({params:,} parameters) with the {run.config.trainer.name} "
            f"trainer on {where}, {len(run.train_loader):,} batches per epoch, into {config.output.dir}"
            + (f", resuming from {resume_from}" if resume_from is not None else "")
        )
    stats = run.trainer.train(resume_from=resume_from)
    if not main:
        return stats
    val = f", validation loss {stats['val_loss']:.4f}" if stats.get("val_loss") is not None else ""
    echo(
        f"done: {stats['steps']} steps, train loss {stats['train_loss']:.4f}{val}, "
        f"{stats['tokens_per_s']:,.0f} tokens/s; checkpoint {stats['checkpoint']}"
    )
    if config.output.sample_tokens and stats["checkpoint"] is not None:
        sample = sample_from_checkpoint(Path(stats["checkpoint"]), run.config, run.trainer.device)
        (config.output.dir / SAMPLE_FILE).write_text(sample + "\n", encoding="utf-8")
        echo(f"sample ({config.output.dir / SAMPLE_FILE}):\n{sample}")
        stats["sample"] = sample
    return stats


def sample_from_checkpoint(checkpoint: Path, config: ExperimentConfig, device: torch.device) -> str:
    """Text generated by the checkpoint's model with the configured sampler, seeded by the experiment seed."""
    model = load_model(checkpoint, map_location=device).eval()
    tokenizer = from_pretrained(checkpoint / TOKENIZER_DIR)
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
) -> dict[str, Any]:
    """Loss and perplexity of a checkpoint on a split of its run's dataset (or of `dataset`)."""
    checkpoint = resolve_checkpoint(path)
    saved = checkpoint / EXPERIMENT_FILE
    config = (
        validate_config(ExperimentConfig, read_json_config(saved), str(saved))
        if saved.is_file()
        else ExperimentConfig()
    )
    if dataset is None and not saved.is_file():
        raise ConfigError(f"{checkpoint} has no {EXPERIMENT_FILE} naming its data; pass --data")
    chosen = choose_device(device)
    model = load_model(checkpoint, map_location=chosen)
    tokenizer = from_pretrained(checkpoint / TOKENIZER_DIR)
    tokens = load_split(config, tokenizer, split, dataset)
    block = model.config.block_size
    if len(tokens) < block:
        raise ConfigError(f"the {split} split holds {len(tokens)} tokens, fewer than the model's block_size={block}")
    loader = DataLoader(TokenBlockDataset(tokens, block), batch_size=batch_size or config.data.batch_size)
    metrics = evaluate_model(model, loader, chosen)
    return {"checkpoint": str(checkpoint), "split": split, "dataset": dataset or config.data.dataset, **metrics}
