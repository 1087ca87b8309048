"""Model directories: `config.json` (the GPTConfig, model_type included) and `model.safetensors`.

No pickle is ever read: weights are safetensors, the config is JSON. Tied weights (the output head shares
the token embedding) are stored once and re-tied on load. Each file is written atomically
(`cleangpt_core.checkpoints.atomic_write`), so an interrupted save never leaves a half-written file under the
final name.
`load_model` also takes a training run directory and follows it to its latest checkpoint
(`cleangpt_core.checkpoints.run_dir.find_model_directory`). The checkpoint of a sharded (FSDP) run holds its
weights as shards; its ``model.safetensors`` is made from them when first read
(`cleangpt_core.checkpoints.sharded.consolidate_model_weights`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from torch import nn

from cleangpt_core.checkpoints.atomic_write import atomic_target, write_text_atomic
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.checkpoints.run_dir import MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE, TOKENIZER_DIR, find_model_directory
from cleangpt_core.checkpoints.sharded import consolidate_model_weights, has_shards
from cleangpt_core.config import GPTConfig, ModelConfig, validate_config
from cleangpt_core.config.model import architecture_schema
from cleangpt_core.errors import CheckpointError, CleanGPTError
from cleangpt_core.model.factory import get_model
from cleangpt_core.model.weights_header import check_block_count, check_shapes, meta_state_dict, read_header

resolve_checkpoint = find_model_directory  # the name this module has always exported


def save_model(model: nn.Module, directory: str | Path) -> Path:
    """Write `model`'s config and weights into `directory` (created if missing) and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_target(directory / MODEL_WEIGHTS_FILE) as aside:
        save_safetensors_model(model, str(aside), metadata={"format": "pt"})
    save_model_config(model.config, directory)
    return directory


def save_model_config(config: ModelConfig, directory: str | Path) -> None:
    """Write a model directory's ``config.json`` (a sharded checkpoint writes its weights apart)."""
    write_text_atomic(Path(directory) / MODEL_CONFIG_FILE, json.dumps(saved_config(config), indent=2) + "\n")


def saved_config(config: ModelConfig) -> dict[str, Any]:
    """`config` as its architecture's schema takes it back: a plugin architecture built on a preset (plugin API
    1.0's route) holds the preset's config, whose part fields a strict schema of its own does not know."""
    data = config.model_dump(mode="json")
    schema, _ = architecture_schema(config.model_type)
    if schema.model_config.get("extra") == "allow":
        return data
    return {key: value for key, value in data.items() if key in schema.model_fields}


def load_config(directory: str | Path) -> GPTConfig:
    """The validated config of a model directory."""
    path = Path(directory) / MODEL_CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{str(directory)!r} has no {MODEL_CONFIG_FILE}: it is not a model directory")
    data = read_json(path, CheckpointError, "save the model again")
    return validate_config(GPTConfig, data, f"model config {str(path)!r}")


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in `directory` (or a run directory's latest checkpoint) on `map_location`."""
    directory = resolve_checkpoint(directory)
    config = load_config(directory)
    weights = directory / MODEL_WEIGHTS_FILE
    if not weights.is_file() and has_shards(directory):
        consolidate_model_weights(directory)
    if not weights.is_file():
        raise CheckpointError(f"{str(directory)!r} has {MODEL_CONFIG_FILE} but no {MODEL_WEIGHTS_FILE}")
    # the header against the config first: a tampered config.json must not build a model of any size
    header = read_header(weights, CheckpointError)
    check_block_count(header, config.n_layer, str(weights), CheckpointError)
    expected = meta_state_dict(config.model_type, config, str(directory / MODEL_CONFIG_FILE), CheckpointError)
    check_shapes(expected, header, str(weights), CheckpointError, tied_may_be_missing=True)
    model = get_model(config.model_type, config=config)
    try:
        missing, unexpected = load_safetensors_model(model, str(weights), strict=False, device=str(map_location))
    except (safetensors.SafetensorError, ValueError) as error:
        raise CheckpointError(f"{str(weights)!r} is damaged or truncated ({' '.join(str(error).split())})") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{str(weights)!r} does not fit a {config.model_type} model with this config: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return model.to(map_location)


def load_trained_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Any, Path]:
    """A checkpoint's model and its tokenizer (from a checkpoint or run directory), checked to fit each other.

    Returns the model, the tokenizer and the checkpoint directory they came from.
    """
    from cleangpt_core.tokenizers import from_pretrained

    directory = resolve_checkpoint(path)
    tokenizer_dir = directory / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise CheckpointError(
            f"{str(directory)!r} has no {TOKENIZER_DIR}/ folder; save the tokenizer with the checkpoint"
        )
    model = load_model(directory, map_location=map_location)
    tokenizer = from_pretrained(tokenizer_dir)
    check_tokenizer_fits(tokenizer.vocab_size, model.config.vocab_size, tokenizer_dir)
    return model, tokenizer, directory


def check_tokenizer_fits(tokenizer_ids: int, model_vocab_size: int, tokenizer_dir: Path) -> None:
    """Refuse a checkpoint's tokenizer that makes ids the model has no embedding for."""
    if tokenizer_ids > model_vocab_size:
        raise CheckpointError(
            f"the tokenizer in {str(tokenizer_dir)!r} has {tokenizer_ids} ids but the model's vocabulary has "
            f"{model_vocab_size}: they do not belong together; restore the checkpoint's own tokenizer"
        )


# A model's embedding may hold more rows than its tokenizer has ids: vocabularies are padded for fast matrix
# multiplication (nanoGPT gives GPT-2's 50257 ids 50304 rows, a multiple of 64) and some models keep rows in
# reserve (Qwen2: 151936 for 151665 ids, Phi-2: 51200 for 50295). Past that padding, the two are not a pair.
VOCABULARY_PADDING_MULTIPLE = 128
VOCABULARY_PADDING_FRACTION = 0.02


def check_tokenizer_matches(tokenizer_ids: int, model_vocab_size: int, where: str, error: type[CleanGPTError]) -> None:
    """Refuse a tokenizer that is not the model's: one with ids the model has no embedding for, or far fewer ids
    than the model's vocabulary, beyond padding it up to a multiple of 128 or by 2 % more rows."""
    padded = -(-tokenizer_ids // VOCABULARY_PADDING_MULTIPLE) * VOCABULARY_PADDING_MULTIPLE
    reserve = tokenizer_ids + VOCABULARY_PADDING_FRACTION * model_vocab_size
    if tokenizer_ids > model_vocab_size or model_vocab_size > max(padded, reserve):
        raise error(
            f"{where}: the tokenizer has {tokenizer_ids} ids but the model's vocabulary has {model_vocab_size}; they "
            "do not belong together (a vocabulary may be padded to a multiple of 128 or by 2 %, not more): put the "
            "model's own tokenizer beside it"
        )


def read_checkpoint_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's ``model.safetensors``, with a missing or damaged file named."""
    path = directory / MODEL_WEIGHTS_FILE
    if not path.is_file() and has_shards(directory):
        consolidate_model_weights(directory)
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {MODEL_WEIGHTS_FILE}; is it a checkpoint directory?")
    try:
        return load_safetensors_file(str(path))
    except (safetensors.SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is damaged or truncated ({' '.join(str(error).split())})") from None
