"""The GPU acceptance script's CPU path: the same code as on a GPU at a tiny shape, every section without error,
one JSON and one markdown table; a missing transformers or nanoGPT checkout is one line, not a failure."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_check.py"

# nanoGPT's interface (GPTConfig fields; forward(idx, targets) -> (logits, loss)), here over our own model:
# the real model.py comes from a checkout, which a test cannot download
NANOGPT_STAND_IN = '''
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cleangpt_core.model import get_model


@dataclass
class GPTConfig:
    block_size: int
    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float
    bias: bool


class GPT(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.inner = get_model("Vanilla", vocab_size=config.vocab_size, n_layer=config.n_layer,
                               n_head=config.n_head, n_embd=config.n_embd, block_size=config.block_size)

    def forward(self, idx, targets=None):
        logits = self.inner(idx)["logits"]
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())
'''


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_cpu_path_runs_every_section_and_writes_a_json_and_a_table(tmp_path):
    checkout = tmp_path / "nanoGPT"
    checkout.mkdir()
    (checkout / "model.py").write_text(textwrap.dedent(NANOGPT_STAND_IN))
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), "--nanogpt", str(checkout)]
    subprocess.run(command, check=True, timeout=600)
    (written,) = out.glob("*.json")
    results = json.loads(written.read_text())
    assert results["device"].startswith("cpu")
    assert results["cuda_tests"]["counts"]["skipped"] >= 1 and "error" not in results["cuda_tests"]
    precision = results["precision"]
    assert precision["loss_fell_by"] > 0.5
    assert precision["fp16"] == {"skipped": "fp16 + GradScaler needs CUDA"}
    distributed = results["distributed"]
    assert distributed["backend"] == "gloo" and distributed["sharded_parameter_type"] == "DTensor"
    assert distributed["fsdp_step_lowered_loss"] is True and "skipped" in distributed["torchrun"]
    training = results["training"]
    assert training["attention_kernels_allowed"] == ["FLASH_ATTENTION", "CUDNN_ATTENTION"]
    assert set(training["contenders"]) == {"transformers", "cleanGPT", "cleanGPT compiled", "nanoGPT compiled"}
    assert all(0 < contender["mfu_vs_measured_peak"] < 1 for contender in training["contenders"].values())
    assert training["compiled_vs_transformers"] > 0 and training["compiled_vs_nanoGPT"] > 0
    assert all(results["generation"][f"batch_{b}"]["same_tokens"] for b in (1, 4))
    largest = results["largest_model"]
    assert [rung["trains"] for rung in largest["rungs"]] == [True, True] and largest["largest"]["n_embd"] == 64
    assert None not in results["targets"].values()
    table = written.with_suffix(".md").read_text()
    assert "| training | cleanGPT compiled: MFU (measured bf16 peak) |" in table
    assert "compiled vs nanoGPT" in table and "| total | seconds |" in table


def test_a_missing_nanogpt_checkout_is_one_line(gpu_check, tmp_path):
    model, line = gpu_check._nanogpt_model(None, gpu_check.CPU, torch.device("cpu"))
    assert model is None and line.startswith("nanoGPT: skipped (no checkout given") and "\n" not in line
    model, line = gpu_check._nanogpt_model(tmp_path, gpu_check.CPU, torch.device("cpu"))
    assert model is None and f"{tmp_path / 'model.py'} does not exist" in line


@pytest.mark.slow
def test_without_transformers_the_training_section_times_ours_and_says_so(gpu_check, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    training = gpu_check.check_training(torch.device("cpu"), gpu_check.CPU, "cpu", None)
    assert set(training["contenders"]) == {"cleanGPT", "cleanGPT compiled"}
    assert [note.split(":")[0] for note in training["notes"]] == ["transformers", "nanoGPT"]
