"""Model directories (config.json + model.safetensors) and finding the checkpoint in a run directory."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cleangpt_core.model import CheckpointError, get_model, load_model, resolve_checkpoint, save_model

SHAPE = {"vocab_size": 41, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 12}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return get_model("Vanilla", **SHAPE).eval()


def test_save_writes_json_config_and_safetensors_only(model, tmp_path):
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "Vanilla" and config["n_embd"] == 16
    stored = load_file(tmp_path / "m" / "model.safetensors")
    assert len({"lm_head.weight", "transformer.wte.weight"} & set(stored)) == 1  # tied: stored once


def test_load_restores_weights_and_keeps_them_tied(model, tmp_path):
    save_model(model, tmp_path)
    restored = load_model(tmp_path)
    tokens = torch.randint(0, 41, (2, 12))
    assert torch.equal(restored(tokens)["logits"], model(tokens)["logits"])
    assert restored.lm_head.weight is restored.transformer.wte.weight


def test_load_with_map_location_puts_the_model_there(model, tmp_path):
    save_model(model, tmp_path)
    assert next(load_model(tmp_path, map_location=torch.device("cpu")).parameters()).device.type == "cpu"


def test_weights_that_do_not_fit_the_config_are_a_clear_error(model, tmp_path):
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["n_layer"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="asks for n_layer=3; the config does not belong to these weights"):
        load_model(tmp_path)


def test_resolve_checkpoint_accepts_a_checkpoint_directory(model, tmp_path):
    save_model(model, tmp_path / "ckpt")
    assert resolve_checkpoint(tmp_path / "ckpt") == tmp_path / "ckpt"


@pytest.mark.parametrize("latest_in", [".", "checkpoints"])
def test_resolve_checkpoint_follows_the_latest_file_of_a_run_directory(model, tmp_path, latest_in):
    for step in (100, 200):
        save_model(model, tmp_path / "checkpoints" / f"step-{step:08d}")
    (tmp_path / latest_in / "latest").write_text("step-00000100\n")
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-00000100"


def test_resolve_checkpoint_without_latest_takes_the_highest_step(model, tmp_path):
    for step in (900, 1000):
        save_model(model, tmp_path / "checkpoints" / f"step-{step:08d}")
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-00001000"
    assert load_model(tmp_path).config.n_embd == 16


def test_resolve_checkpoint_explains_what_it_expected(tmp_path):
    with pytest.raises(CheckpointError, match="neither a model directory"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "missing")


def test_latest_naming_a_missing_checkpoint_is_an_error(tmp_path):
    (tmp_path / "latest").write_text("step-00000007")
    with pytest.raises(CheckpointError, match="step-00000007"):
        resolve_checkpoint(tmp_path)
