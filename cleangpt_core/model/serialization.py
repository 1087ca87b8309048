"""Model directories: `config.json` (the GPTConfig, model_type included) and `model.safetensors`.

No pickle is ever read: weights are safetensors, the config is JSON. Tied weights (the output head shares
the token embedding) are stored once and re-tied on load. Files are written aside and renamed into place,
so an interrupted save never leaves a half-written file under the final name.

A training run directory holds ``checkpoints/step-XXXXXXXX/`` folders and a ``latest`` text file naming the
newest; `resolve_checkpoint` turns either a run directory or a checkpoint directory into the latter.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from torch import nn

from cleangpt_core.config import GPTConfig, validate_config
from cleangpt_core.errors import CheckpointError
from cleangpt_core.model.factory import get_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LATEST_FILE = "latest"
CHECKPOINTS_DIR = "checkpoints"
_STEP_DIR = re.compile(r"step-(\d+)$")


def save_model(model: nn.Module, directory: str | Path) -> Path:
    """Write `model`'s config and weights into `directory` (created if missing) and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.model_dump(mode="json")
    temporary_weights = directory / f".{WEIGHTS_FILE}.tmp"
    save_safetensors_model(model, str(temporary_weights), metadata={"format": "pt"})
    os.replace(temporary_weights, directory / WEIGHTS_FILE)
    temporary_config = directory / f".{CONFIG_FILE}.tmp"
    temporary_config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary_config, directory / CONFIG_FILE)
    return directory


def load_config(directory: str | Path) -> GPTConfig:
    """The validated config of a model directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{str(directory)!r} has no {CONFIG_FILE}: it is not a model directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {error}") from None
    return validate_config(GPTConfig, data, f"model config {str(path)!r}")


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in `directory` (or a run directory's latest checkpoint) on `map_location`."""
    directory = resolve_checkpoint(directory)
    config = load_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{str(directory)!r} has {CONFIG_FILE} but no {WEIGHTS_FILE}")
    model = get_model(config.model_type, config=config)
    missing, unexpected = load_safetensors_model(model, str(weights), strict=False, device=str(map_location))
    if missing or unexpected:
        raise CheckpointError(
            f"{str(weights)!r} does not fit a {config.model_type} model with this config: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return model.to(map_location)


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint (model) directory `path` names: itself, or a run directory's latest checkpoint.

    A run directory is followed through its ``latest`` file (in the run directory or in its
    ``checkpoints/`` folder); without one, the ``step-N`` folder with the highest N is taken.
    """
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint path {str(path)!r} does not exist")
    for holder in (path, path / CHECKPOINTS_DIR):
        latest = holder / LATEST_FILE
        if latest.is_file():
            name = latest.read_text(encoding="utf-8").strip()
            for candidate in (holder / name, path / CHECKPOINTS_DIR / name, path / name):
                if (candidate / CONFIG_FILE).is_file():
                    return candidate
            raise CheckpointError(f"{str(latest)!r} names {name!r}, which is not a checkpoint directory")
    steps = [
        (int(match.group(1)), child)
        for child in (path / CHECKPOINTS_DIR).glob("step-*")
        if (match := _STEP_DIR.search(child.name)) and (child / CONFIG_FILE).is_file()
    ]
    if steps:
        return max(steps)[1]
    raise CheckpointError(
        f"{str(path)!r} is neither a model directory (no {CONFIG_FILE}) nor a run directory "
        f"(no {LATEST_FILE} file, no {CHECKPOINTS_DIR}/step-* folders)"
    )
