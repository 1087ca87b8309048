"""A cleanGPT checkpoint as a Hugging Face folder, and back.

`export_hf` writes ``config.json`` + ``model.safetensors`` of the architecture's transformers family and the
tokenizer as a ``tokenizers`` model (``tokenizer.json`` + ``tokenizer_config.json``), so that
``AutoModelForCausalLM.from_pretrained(folder)`` and ``AutoTokenizer.from_pretrained(folder)`` load it with no
custom code (and so vLLM, TGI and the Hub read it). Beside them go cleanGPT's own tokenizer files and, inside
``config.json`` under ``cleangpt_config``, the model config as trained, so that `import_hf` gives back the very
same model, bit for bit. Both check everything before writing and write into a temporary folder that is
renamed into place, so a failure never leaves a half-written folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from cleangpt_core.checkpoints.atomic_write import atomic_target
from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.checkpoints.run_dir import RunDirectory, find_model_directory
from cleangpt_core.config import GPTConfig, validate_config
from cleangpt_core.errors import CheckpointError, HFConversionError
from cleangpt_core.huggingface.families import HFFamily, family_for_architecture, family_for_model_type
from cleangpt_core.huggingface.weights import read_hf_weights
from cleangpt_core.model.serialization import check_tokenizer_matches, load_model, resolve_checkpoint, save_model
from cleangpt_core.tokenizers import BaseTokenizer, from_pretrained
from cleangpt_core.tokenizers.base_tokenizer import TOKENIZER_FILE
from cleangpt_core.tokenizers.gpt2_tokenizer import GPT2Tokenizer
from cleangpt_core.tokenizers.hf_tokenizer import BACKEND_FILE as HF_TOKENIZER_FILE
from cleangpt_core.tokenizers.hf_tokenizer import HFTokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SAVED_CONFIG_KEY = "cleangpt_config"  # transformers keeps unknown config.json keys as they are
TOKENIZER_DIR = "tokenizer"  # where a cleanGPT checkpoint keeps its tokenizer


def export_hf(source: str | Path, destination: str | Path) -> Path:
    """Write the model and tokenizer of `source` (a checkpoint or run directory) as a Hugging Face folder."""
    checkpoint = resolve_checkpoint(source)
    destination = Path(os.path.abspath(destination))  # "." has no name to write a sibling folder beside
    _check_free(destination)
    model = load_model(checkpoint).eval()
    family = family_for_architecture(model.config.model_type)
    tokenizer = _checkpoint_tokenizer(checkpoint)
    hf_tokenizer = tokenizer.to_hf_tokenizer()
    hf_tokenizer.model_max_length = model.config.block_size
    hf_config, tensors = family.to_hf(model)
    hf_config.update(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{SAVED_CONFIG_KEY: model.config.model_dump(mode="json")},
    )

    def write(folder: Path) -> None:
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        (folder / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        hf_tokenizer.save_pretrained(str(folder))
        tokenizer.save_pretrained(folder)  # cleanGPT's own files, for import_hf

    return _write_folder(destination, write)


def import_hf(source: str | Path, destination: str | Path) -> Path:
    """Turn a Hugging Face folder (written by `export_hf`, or a GPT-2 one) into a cleanGPT checkpoint folder.

    The result holds ``config.json``, ``model.safetensors`` and ``tokenizer/``: ``cleangpt generate`` and
    ``load_model`` take it as they take any checkpoint.
    """
    source, destination = Path(source), Path(os.path.abspath(destination))
    family_for_model_type(str(_read_hf_config(source).get("model_type")))  # an unknown family: before anything
    _check_free(destination)
    model, tokenizer = read_hf_folder(source)

    def write(folder: Path) -> None:
        save_model(model, folder)
        tokenizer.save_pretrained(folder / TOKENIZER_DIR)

    return _write_folder(destination, write)


def read_hf_folder(source: str | Path) -> tuple[nn.Module, BaseTokenizer]:
    """The cleanGPT model and tokenizer of a Hugging Face folder (what `import_hf` writes, in memory)."""
    source = Path(source)
    hf_config = _read_hf_config(source)
    family = family_for_model_type(str(hf_config.get("model_type")))
    saved = hf_config.get(SAVED_CONFIG_KEY)
    config = validate_config(GPTConfig, saved, f"{SAVED_CONFIG_KEY} of {source / CONFIG_FILE}") if saved else None
    if config is not None:
        _check_saved_config(family, config, hf_config, source / CONFIG_FILE)
    tokenizer = _folder_tokenizer(source)
    model = family.from_hf(hf_config, read_hf_weights(source), config)
    check_tokenizer_matches(tokenizer.vocab_size, model.config.vocab_size, str(source), HFConversionError)
    return model, tokenizer


def _check_saved_config(family: HFFamily, config: GPTConfig, hf_config: dict[str, Any], path: Path) -> None:
    """Refuse a ``cleangpt_config`` that the folder's own fields contradict: it would silently override them
    (an edited folder, or a config pasted from another model)."""
    if config.model_type.lower() != family.architecture.lower():
        raise HFConversionError(
            f"{path}: {SAVED_CONFIG_KEY} is a {config.model_type} config, but the folder is a "
            f"{hf_config.get('model_type')} model ({family.architecture}); remove {SAVED_CONFIG_KEY} or fix it"
        )
    try:
        expected = family.hf_config(config)
    except HFConversionError as error:
        where = f"{path}: {SAVED_CONFIG_KEY} does not describe a {family.architecture}"
        raise HFConversionError(f"{where}: {error}") from None
    differ = sorted(k for k in _STRUCTURE if k in expected and k in hf_config and expected[k] != hf_config[k])
    if differ:
        detail = ", ".join(f"{key}: {hf_config[key]!r} vs {expected[key]!r}" for key in differ[:4])
        raise HFConversionError(
            f"{path}: {SAVED_CONFIG_KEY} contradicts the folder's own fields ({detail}); remove {SAVED_CONFIG_KEY} "
            "to import the folder as its fields say, or restore the exported config.json"
        )


# The fields that fix the shape of the model; a saved cleanGPT config must agree with the folder on each.
_STRUCTURE = (
    "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "hidden_size", "intermediate_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
    "tie_word_embeddings",
)


def _checkpoint_tokenizer(checkpoint: Path) -> BaseTokenizer:
    directory = checkpoint / TOKENIZER_DIR
    if not directory.is_dir():
        raise CheckpointError(f"{str(checkpoint)!r} has no {TOKENIZER_DIR}/ folder: its tokenizer cannot be exported")
    return from_pretrained(directory)


def _read_hf_config(source: Path) -> dict[str, Any]:
    path = source / CONFIG_FILE
    if not path.is_file():
        if RunDirectory(source).holds_run():  # a training run: what keeps it from naming its checkpoint is the news
            find_model_directory(source)
        raise HFConversionError(f"{str(source)!r} has no {CONFIG_FILE}: it is not a Hugging Face model folder")
    data = read_json(path, HFConversionError, "download or export the folder again")
    if not isinstance(data, dict):
        raise HFConversionError(f"{str(path)!r} must hold a JSON object")
    return data


def _folder_tokenizer(source: Path) -> BaseTokenizer:
    """cleanGPT's own tokenizer files (an export), a GPT-2 vocab.json + merges.txt, or any tokenizer.json (the
    `hf` tokenizer: the folder's Rust tokenizer and the special tokens its tokenizer_config.json names)."""
    if (source / TOKENIZER_FILE).is_file():
        return from_pretrained(source)
    if (source / "vocab.json").is_file() and (source / "merges.txt").is_file():
        return GPT2Tokenizer(pretrained_model_name_or_path=str(source))
    if (source / HF_TOKENIZER_FILE).is_file():
        return HFTokenizer(name_or_path=str(source))
    raise HFConversionError(
        f"{str(source)!r} holds no tokenizer cleanGPT can rebuild ({TOKENIZER_FILE} from `cleangpt export`, a "
        f"{HF_TOKENIZER_FILE}, or a GPT-2 vocab.json + merges.txt)"
    )


def _check_free(destination: Path) -> None:
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise HFConversionError(f"{str(destination)!r} already exists and is not empty; choose a new folder")


def _write_folder(destination: Path, write: Any) -> Path:
    """Run `write(folder)` on a hidden sibling folder, then move it into place as `destination`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_target(destination, directory=True, replace=False) as folder:
            write(folder)
    except FileExistsError:  # another export or import finished into it meanwhile: that one is kept
        raise HFConversionError(
            f"{str(destination)!r} was filled by another process while this one wrote; it is kept as that one "
            "left it: choose a new folder"
        ) from None
    return destination
