"""The GPU acceptance script's CPU path (``--dry-run``): the same code as on a GPU at a tiny shape, every section
without error, one JSON and one markdown table; a missing transformers or nanoGPT checkout is one line, not a
failure. The datasheet peaks are found by a card's exact name, and MFU is reported against them and against the
measured matmul."""

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
NANOGPT_STAND_IN = """
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
"""


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
    command = [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--nanogpt", str(checkout)]
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
    ours, theirs = (
        {"cleanGPT", "cleanGPT compiled"},
        {"transformers eager", "transformers compiled", "nanoGPT compiled"},
    )
    assert set(training["contenders"]) == ours | theirs
    for contender in training["contenders"].values():
        assert 0 < contender["mfu_vs_measured_matmul"] < 1 and contender["mfu_vs_datasheet"] is None  # a CPU has none
    assert training["datasheet"] is None and "no datasheet peak for 'cpu" in " ".join(training["notes"])
    ratios = ("compiled_vs_transformers_compiled", "compiled_vs_transformers_eager", "compiled_vs_nanoGPT_compiled")
    assert all(training[ratio] > 0 for ratio in ratios)
    assert set(training["compile_cold_start_seconds"]) == {
        "transformers compiled",
        "cleanGPT compiled",
        "nanoGPT compiled",
    }
    assert all(results["generation"][f"batch_{b}"]["same_tokens"] for b in (1, 4))
    largest = results["largest_model"]
    assert [rung["trains"] for rung in largest["rungs"]] == [True, True] and largest["largest"]["n_embd"] == 64
    measured = {key: value for key, value in results["targets"].items() if "datasheet" not in key}
    assert None not in measured.values() and results["targets"]["compiled_mfu_vs_datasheet_at_least_40%"] is None
    table = written.with_suffix(".md").read_text()
    assert "| training | cleanGPT compiled: MFU (datasheet) | n/a | >= 40% |" in table
    assert "| training | cleanGPT compiled: MFU (measured matmul) |" in table
    assert "| training | bf16 peak, datasheet (dense) | none for this device |  |" in table
    assert "compiled vs transformers compiled" in table and "| >= 1.3x |" in table
    assert "compiled vs nanoGPT compiled" in table and "| total | seconds |" in table


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
    assert [note.split(":")[0] for note in training["notes"]] == [
        "transformers",
        "nanoGPT",
        "no datasheet peak for 'cpu'",
    ]


@pytest.mark.parametrize(
    ("device_name", "card"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),  # not the SXM's peak
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),  # not an L4
        ("NVIDIA A10", "A10"),
        ("NVIDIA A10G", "A10G"),  # not an A10
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA L40", None),  # a card without a figure here has none, rather than a neighbour's
        ("NVIDIA GeForce RTX 4090 D", None),
    ],
)
def test_the_datasheet_peak_is_the_card_named_exactly(gpu_check, device_name, card):
    sheet = gpu_check.datasheet_for(device_name)
    assert (sheet.card if sheet else None) == card


def test_the_datasheet_figures_are_the_dense_bf16_peaks(gpu_check):
    peaks = {sheet.card: sheet.bf16_tflops for sheet in gpu_check.DATASHEETS}
    assert peaks["H100 SXM"] == 989.4 and peaks["H100 PCIe"] == 756.5 and peaks["H100 NVL"] == 835.5
    assert peaks["A100 40GB"] == peaks["A100 80GB"] == 312.0 and peaks["L4"] == 121.0 and peaks["L40S"] == 362.05
    assert peaks["A10"] == 125.0 and peaks["A10G"] == 70.0 and peaks["RTX 4090"] == 165.2


def test_the_mfu_target_is_met_against_the_datasheet_not_the_measured_matmul(gpu_check):
    sheet = gpu_check.datasheet_for("NVIDIA H100 PCIe")
    # 36 % of the datasheet is 48 % of a matmul that reaches 75 % of it: the target is missed
    training = {
        "datasheet": {"card": sheet.card, "bf16_tflops": sheet.bf16_tflops, "names": sheet.names},
        "matmul_peak_tflops": 0.75 * sheet.bf16_tflops,
        "matmul_peak_vs_datasheet": 0.75,
        "contenders": {
            "cleanGPT compiled": {"mfu_vs_datasheet": 0.36, "mfu_vs_measured_matmul": 0.48, "tokens_per_s": 1e5}
        },
        "compiled_vs_transformers_compiled": 1.4,
        "compiled_vs_transformers_eager": 2.0,
    }
    results = {
        "training": training,
        "total_seconds": 400.0,
        "device": "NVIDIA H100 PCIe",
        "torch": "2.13",
        "when": "now",
    }
    results["targets"] = gpu_check.targets(results)
    assert results["targets"]["compiled_mfu_vs_datasheet_at_least_40%"] is False
    assert results["targets"]["compiled_at_least_1.3x_transformers_compiled"] is True
    assert results["targets"]["compiled_at_least_1.0x_nanogpt_compiled"] is None  # not measured
    table = gpu_check.markdown(results)
    assert "| training | cleanGPT compiled: MFU (datasheet) | 36.0% | >= 40% |" in table
    assert "| training | bf16 peak, datasheet (dense) | H100 PCIe: 756.5 TFLOP/s |  |" in table
    assert "(75% of the datasheet)" in table
