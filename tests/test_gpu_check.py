"""The GPU check script's CPU path: the same code as on a GPU, at a small shape, every section without error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_the_gpu_check_runs_every_section_on_the_cpu(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(tmp_path)], check=True, timeout=600)
    (written,) = tmp_path.glob("*.json")
    results = json.loads(written.read_text())
    assert results["device"].startswith("cpu")
    precision = results["precision"]
    assert precision["loss_fell_by"] > 0.5
    assert precision["bf16"]["within_tolerance"] is True
    assert precision["fp16"] == {"skipped": "fp16 + GradScaler needs CUDA"}
    distributed = results["distributed"]
    assert distributed["backend"] == "gloo" and distributed["sharded_parameter_type"] == "DTensor"
    assert distributed["fsdp_step_lowered_loss"] is True
    assert distributed["gradient_scaler"] == "ShardedGradScaler" and distributed["fsdp_fp16_scaled_loss"] > 0
    assert results["flash_attention"]["flash_attention_trains"] is True
    throughput = results["training_throughput"]
    assert set(throughput["contenders"]) == {"transformers", "cleanGPT"}
    assert all(0 < contender["mfu_vs_measured_peak"] < 1 for contender in throughput["contenders"].values())
    assert all(results["generation"][f"batch_{b}"]["same_tokens"] for b in (1, 4))
    assert set(results["targets"]) == {
        "mfu_bf16_at_least_40_percent",
        "training_at_least_1.3x_transformers",
        "generation_batch_1_at_least_1.5x_transformers",
        "mixed_precision_within_tolerance",
    }
