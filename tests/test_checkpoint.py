"""Checkpoint I/O: safetensors + JSON only, exact round trips, atomic writes, rotation and averaging, the random
generators of the current GPU only, sharded tensors on disk."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from cleangpt_core.checkpoints.run_dir import BEST_FILE, LATEST_FILE
from cleangpt_core.checkpoints.sharded import (
    check_supported,
    consolidate_model_weights,
    read_full,
    shard_shapes,
    write_shards,
)
from cleangpt_core.distributed.strategies import load_checkpoint_weights
from cleangpt_core.errors import CheckpointError, ConfigError
from cleangpt_core.model import get_model, load_model
from cleangpt_core.trainers.training_checkpoint import (
    CheckpointManager,
    CheckpointWriteError,
    average_weights,
    capture_rng_state,
    flatten_state,
    read_state,
    restore_rng_state,
    unflatten_state,
)


def _trained_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    for _ in range(3):
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
    return model, optimizer


def _assert_same_structure(expected, actual):
    assert type(expected) is type(actual)
    if isinstance(expected, dict):
        assert list(expected) == list(actual)
        for key in expected:
            _assert_same_structure(expected[key], actual[key])
    elif isinstance(expected, list | tuple):
        assert len(expected) == len(actual)
        for left, right in zip(expected, actual, strict=True):
            _assert_same_structure(left, right)
    elif isinstance(expected, torch.Tensor):
        assert expected.dtype == actual.dtype and torch.equal(expected, actual)
    elif isinstance(expected, np.ndarray):
        assert expected.dtype == actual.dtype and np.array_equal(expected, actual)
    else:
        assert expected == actual


def test_optimizer_state_survives_flattening_exactly():
    _, optimizer = _trained_optimizer()
    state = optimizer.state_dict()
    structure, tensors = flatten_state(state, "optimizer")
    text = json.dumps(structure)  # the structure is plain JSON: int keys, tuples and floats included
    _assert_same_structure(state, unflatten_state(json.loads(text), tensors))


def test_rng_states_survive_a_checkpoint_and_replay_the_same_draws(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    manager = CheckpointManager(tmp_path)
    checkpoint = manager.save(1, nn.Linear(2, 2), {"rng": state})
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(read_state(checkpoint)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_a_checkpoint_holds_only_safetensors_and_json(tmp_path):
    model, optimizer = _trained_optimizer()
    checkpoint = CheckpointManager(tmp_path).save(3, model, {"optimizer": optimizer.state_dict()})
    names = sorted(path.name for path in checkpoint.iterdir())
    assert names == ["model.safetensors", "trainer_state.json", "trainer_state.safetensors"]
    json.loads((checkpoint / "trainer_state.json").read_text())
    assert (tmp_path / LATEST_FILE).read_text().strip() == "checkpoints/step-00000003"


def test_weights_and_optimizer_load_back_into_fresh_objects(tmp_path):
    model, optimizer = _trained_optimizer()
    checkpoint = CheckpointManager(tmp_path).save(3, model, {"optimizer": optimizer.state_dict()})
    torch.manual_seed(1)
    fresh = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=5.0)
    load_checkpoint_weights(fresh, checkpoint)
    fresh_optimizer.load_state_dict(read_state(checkpoint)["optimizer"])
    for left, right in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(left, right)
    _assert_same_structure(optimizer.state_dict(), fresh_optimizer.state_dict())


def test_our_models_checkpoint_as_model_directories_with_tied_weights(tmp_path):
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=11, n_layer=1, n_head=2, n_embd=16, block_size=8)
    checkpoint = CheckpointManager(tmp_path).save(7, model, {})
    loaded = load_model(tmp_path)  # the architecture's own loader, following the run's `latest`
    for (name, left), right in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(left, right), name
    assert (checkpoint / "config.json").is_file()


def test_a_failed_write_leaves_the_previous_checkpoint_latest_and_loadable(tmp_path, monkeypatch):
    model, _ = _trained_optimizer()
    manager = CheckpointManager(tmp_path)
    first = manager.save(1, model, {"step": 1})
    real_replace = os.replace

    def full_disk(source, target):
        if "step-00000002" in str(target):
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", full_disk)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(CheckpointWriteError, match=r"step-00000002.*No space left.*still .*step-00000001"):
        manager.save(2, model, {"step": 2})
    monkeypatch.setattr(os, "replace", real_replace)
    assert manager.latest() == first
    assert [path.name for path in manager.root.iterdir()] == ["step-00000001"]  # no partial directory left
    restored = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    load_checkpoint_weights(restored, manager.latest())
    assert read_state(manager.latest()) == {"step": 1}


def test_an_unwritable_run_directory_fails_with_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    manager = CheckpointManager(tmp_path / "run")
    manager.save(1, nn.Linear(2, 2), {})
    manager.root.chmod(0o500)
    try:
        with pytest.raises(CheckpointWriteError, match="still"):
            manager.save(2, nn.Linear(2, 2), {})
    finally:
        manager.root.chmod(0o700)
    assert manager.latest().name == "step-00000001"


def test_rotation_keeps_the_last_n_and_the_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    losses = {1: 3.0, 2: 1.0, 3: 2.0, 4: 2.5, 5: None}
    for step, loss in losses.items():
        manager.save(step, nn.Linear(2, 2), {}, val_loss=loss)
    assert [path.name for path in manager.checkpoints()] == ["step-00000002", "step-00000004", "step-00000005"]
    best, loss = manager.best()
    assert best.name == "step-00000002" and loss == 1.0
    assert json.loads((tmp_path / BEST_FILE).read_text())["step"] == 2


def test_saving_the_same_step_again_replaces_it(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save(4, nn.Linear(2, 2), {"version": 1})
    manager.save(4, nn.Linear(2, 2), {"version": 2})
    assert read_state(manager.latest()) == {"version": 2}
    assert [path.name for path in manager.root.iterdir()] == ["step-00000004"]


def test_averaging_checkpoints_gives_the_elementwise_mean(tmp_path):
    manager = CheckpointManager(tmp_path)
    models = []
    for step in (1, 2, 3):
        torch.manual_seed(step)
        models.append(nn.Linear(3, 3))
        manager.save(step, models[-1], {})
    averaged = average_weights(manager.checkpoints())
    expected = (models[0].weight + models[1].weight + models[2].weight) / 3
    assert torch.allclose(averaged["weight"], expected, atol=1e-7)
    assert averaged["weight"].dtype == torch.float32


def test_objects_that_would_need_pickle_are_refused(tmp_path):
    with pytest.raises(TypeError, match="nothing is pickled"):
        CheckpointManager(tmp_path).save(1, nn.Linear(2, 2), {"function": print})
    assert CheckpointManager(tmp_path).latest() is None
    assert list((tmp_path / "checkpoints").iterdir()) == []  # the half-written directory is gone


class VisibleGPUs:
    """The RNG functions of ``torch.cuda`` as a process sees them with `count` visible GPUs, `current` its own:
    no GPU is lent to these tests, so each GPU's generator is a CPU generator here (torch indexes its CUDA
    generators by device, and an index past the visible ones raises IndexError, as here)."""

    def __init__(self, count: int, current: int = 0) -> None:
        self.generators = [torch.Generator().manual_seed(100 + index) for index in range(count)]
        self.current = current

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("is_available", "is_initialized"):
            monkeypatch.setattr(torch.cuda, name, lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(self.generators))
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get_rng_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [g.get_state() for g in self.generators])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set_rng_state_all)

    def _index(self, device: object) -> int:
        return self.current if device == "cuda" else int(device)

    def get_rng_state(self, device: object = "cuda") -> torch.Tensor:
        return self.generators[self._index(device)].get_state()

    def set_rng_state(self, state: torch.Tensor, device: object = "cuda") -> None:
        self.generators[self._index(device)].set_state(state)

    def set_rng_state_all(self, states: list[torch.Tensor]) -> None:
        for index, state in enumerate(states):
            self.set_rng_state(state, index)


def test_a_process_checkpoints_the_generator_of_its_own_gpu_and_resumes_with_fewer_visible(tmp_path, monkeypatch):
    writer = VisibleGPUs(count=4, current=2)  # rank 2 of a machine with 4 GPUs
    writer.install(monkeypatch)
    state = capture_rng_state()
    assert torch.equal(state["cuda"], writer.generators[2].get_state())
    checkpoint = CheckpointManager(tmp_path).save(1, nn.Linear(2, 2), {"rng": state})
    resumer = VisibleGPUs(count=1)  # resumed as the one process of a machine with one GPU
    resumer.install(monkeypatch)
    restore_rng_state(read_state(checkpoint)["rng"])
    assert torch.equal(resumer.generators[0].get_state(), writer.generators[2].get_state())


def test_an_earlier_release_s_state_of_every_gpu_restores_the_current_one(monkeypatch):
    writer = VisibleGPUs(count=4)
    saved = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    saved["cuda"] = [generator.get_state() for generator in writer.generators]  # torch.cuda.get_rng_state_all()
    resumer = VisibleGPUs(count=1)
    resumer.install(monkeypatch)
    restore_rng_state(saved)
    assert torch.equal(resumer.generators[0].get_state(), writer.generators[0].get_state())


def test_shards_round_trip_as_safetensors_files_and_json_headers_only(tmp_path):
    tensors = {"model.w": torch.randn(5, 3), "state.step": torch.tensor(7.0), "model.b": torch.arange(4.0)}
    write_shards(tensors, tmp_path)  # one process: its shards are the whole tensors
    files = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file())
    assert files == ["shards/shard-00001-model-00001-of-00001.safetensors"]  # no pickled .metadata
    assert shard_shapes(tmp_path) == {
        "model.w": ((5, 3), torch.float32),
        "state.step": ((), torch.float32),
        "model.b": ((4,), torch.float32),
    }
    back = read_full(tmp_path)
    assert all(torch.equal(back[name], tensor) for name, tensor in tensors.items())
    target = consolidate_model_weights(tmp_path)
    weights = safetensors.torch.load_file(str(target))
    assert sorted(weights) == ["b", "w"] and torch.equal(weights["w"], tensors["model.w"])


def test_a_shard_header_claiming_more_than_its_file_holds_is_refused_before_allocating(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    forged = json.dumps({"w": {"saved_offsets": [10**9, 0]}})  # a chunk of 2 rows "at row 10^9"
    safetensors.torch.save_file(
        {"w": torch.zeros(2, 2)}, str(folder / "shard-00001.safetensors"), metadata={"DCP_SHARDING_INFO": forged}
    )
    with pytest.raises(CheckpointError, match=r"hold 4 elements of w.*damaged or incomplete"):
        read_full(tmp_path)


def test_a_torch_without_safetensors_storage_for_shards_is_told_so_in_one_line(tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp

    monkeypatch.delattr(dcp, "HuggingFaceStorageWriter")  # as in torch < 2.9, above the declared floor of 2.6
    with pytest.raises(ConfigError, match=r"needs torch>=2.9 \(this is torch .*trainer.strategy='ddp'") as error:
        check_supported()
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="needs torch>=2.9"):
        write_shards({"w": torch.zeros(2)}, tmp_path)
