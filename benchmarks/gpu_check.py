"""Every number the project needs from a GPU, in one short run on one GPU (a small path of the same code on CPU).

1. precision: our AdvancedTrainer on the tiny counting problem in fp32, bf16 and fp16 + GradScaler; each
   loss curve must stay within tolerance of fp32's (mean of the last quarter of steps).
2. distributed: a single-process nccl group (gloo on CPU), FSDP2 steps through our strategy code (fp32,
   then fp16 with the sharded gradient scaler), and a full state dict gathered from the shards.
3. flash attention: our model's forward and backward with only the flash SDPA kernel allowed.
4. training throughput at GPT-2 small's shape (12 x 768, context 1024, vocabulary 50304, bf16 autocast)
   against transformers' GPT2LMHeadModel with the same weights, interleaved, with MFU against a bf16
   square matmul timed in the same rounds (and against the datasheet peak when the device is known); on a GPU
   also our model under `trainer.compile`, with its cold start.
5. cached generation, batch 1 and 32, against transformers' `generate`.

Results go to ``benchmarks/results/<device name>.json``. The CPU path (``--device cpu``) runs every section
at a small shape; fp16 is skipped there (its gradient scaler needs CUDA). The tests run the CPU path.

    python benchmarks/gpu_check.py                         # on a GPU machine (about three minutes)
    python benchmarks/gpu_check.py --device cpu --out DIR  # the small CPU path
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from measure import (
    flops_per_token,
    generation_race,
    gpt2_twins,
    interleaved_medians,
    matmul_peak,
    square_matmuls,
    training_step,
)
from torch.nn.attention import SDPBackend, sdpa_kernel

from cleangpt_core.distributed.process_group import backend_for
from cleangpt_core.distributed.strategies import full_model_state, gradient_scaler, prepare_model
from cleangpt_core.testing.trainer import tiny_loaders, tiny_model
from cleangpt_core.trainers import get_trainer

RESULTS = Path(__file__).resolve().parent / "results"
LOSS_TOLERANCE = 0.05  # |mean loss of the last quarter - fp32's|, on a problem whose loss falls by > 1
DATASHEET_BF16_TFLOPS = {"A100": 312, "H100": 989, "H200": 989, "L4": 121, "A10": 125, "4090": 165}  # dense


@dataclass(frozen=True)
class Profile:
    """The sizes of one path: the GPU's are the issue's, the CPU's keep the same code fast."""

    precision_steps: int
    n_layer: int
    n_head: int
    n_embd: int
    context: int
    vocab_size: int
    train_batch: int
    rounds: int
    peak_size: int
    prompt: int
    new_tokens: int
    generation_batches: tuple[int, ...]
    compile: bool


GPU = Profile(120, 12, 12, 768, 1024, 50304, 8, 10, 8192, 64, 128, (1, 32), True)
CPU = Profile(24, 2, 2, 64, 64, 256, 2, 2, 512, 8, 16, (1, 4), False)


def autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16)


def check_precision(device: torch.device, profile: Profile) -> dict[str, Any]:
    """Loss curves of the advanced trainer in each precision, and their distance to fp32's."""
    curves: dict[str, Any] = {}
    for mode in ("no", "bf16", "fp16"):
        if mode == "fp16" and device.type != "cuda":
            curves[mode] = {"skipped": "fp16 + GradScaler needs CUDA"}
            continue
        model = tiny_model(seed=0, dropout=0.0)
        train, _ = tiny_loaders(batch_size=8)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
        trainer = get_trainer(
            "advanced",
            model,
            train,
            optimizer,
            device=device,
            mixed_precision=mode,
            num_epochs=100,
            max_steps=profile.precision_steps,
            progress_bar=False,
        )
        losses = trainer.train()["losses"]
        curves[mode] = {"losses": losses, "tail_mean": sum(losses[-len(losses) // 4 :]) / (len(losses) // 4)}
    reference = curves["no"]["tail_mean"]
    for mode in ("bf16", "fp16"):
        if "losses" in curves[mode]:
            gap = abs(curves[mode]["tail_mean"] - reference)
            curves[mode].update(gap_to_fp32=gap, within_tolerance=gap <= LOSS_TOLERANCE)
    return {"tolerance": LOSS_TOLERANCE, "loss_fell_by": curves["no"]["losses"][0] - reference, **curves}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_distributed(device: torch.device) -> dict[str, Any]:
    """A one-process group of the device's backend and one FSDP2 training step through our strategy code."""
    backend = backend_for(device)
    started = time.perf_counter()
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        init_seconds = time.perf_counter() - started
        total = torch.ones(1, device=device)
        dist.all_reduce(total)
        model = tiny_model(seed=0, dropout=0.0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        model = prepare_model(model, "fsdp", device, optimizer=optimizer)
        tokens = torch.randint(0, 17, (4, 16), device=device, generator=torch.Generator(device).manual_seed(0))
        losses = []
        for _ in range(2):
            loss = model(tokens, labels=tokens)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        # fp16 under FSDP2: the sharded scaler agrees across ranks on skipping an overflowing step
        scaler = gradient_scaler("fsdp", device)
        with torch.autocast(device.type, dtype=torch.float16):
            loss = model(tokens, labels=tokens)["loss"]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        weights = full_model_state(model)
        return {
            "fsdp_fp16_scaled_loss": loss.item(),
            "gradient_scaler": type(scaler).__name__,
            "backend": backend,
            "init_seconds": init_seconds,
            "all_reduce": total.item(),
            "sharded_parameter_type": type(model.lm_head.weight).__name__,
            "fsdp_losses": losses,
            "fsdp_step_lowered_loss": losses[1] < losses[0],
            "full_state_tensors": len(weights),
        }
    finally:
        dist.destroy_process_group()


def check_flash_attention(device: torch.device, profile: Profile) -> dict[str, Any]:
    """Whether our model trains with only the flash SDPA kernel allowed (it raises if the call cannot use it)."""
    _, ours = gpt2_twins(
        n_layer=2, n_head=profile.n_head, n_embd=profile.n_embd, context=profile.context, vocab_size=256
    )
    ours = ours.to(device)
    tokens = torch.randint(0, 256, (2, profile.context), device=device)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), autocast(device):
        ours(tokens, labels=tokens)["loss"].backward()
    return {"flash_attention_trains": True, "dtype": "bfloat16", "context": profile.context}


def check_training_throughput(device: torch.device, profile: Profile, name: str) -> dict[str, Any]:
    """Training step of transformers' GPT-2 and ours (same weights, bf16 autocast), with MFU."""
    shape = {
        "n_layer": profile.n_layer,
        "n_head": profile.n_head,
        "n_embd": profile.n_embd,
        "context": profile.context,
        "vocab_size": profile.vocab_size,
    }
    hf_model, ours = gpt2_twins(**shape)
    hf_model, ours = hf_model.to(device), ours.to(device)
    tokens = torch.randint(0, profile.vocab_size, (profile.train_batch, profile.context), device=device)
    steps: dict[str, Callable[[], None]] = {
        "transformers": training_step(hf_model, tokens, context=autocast(device)),
        "cleanGPT": training_step(ours, tokens, context=autocast(device)),
    }
    cold_start = None
    if profile.compile:
        _, compiled = gpt2_twins(**shape)
        compiled = compiled.to(device)
        compiled.compile()  # what trainer.compile does
        steps["cleanGPT compiled"] = training_step(compiled, tokens, context=autocast(device))
        started = time.perf_counter()
        steps["cleanGPT compiled"]()
        torch.cuda.synchronize()
        cold_start = time.perf_counter() - started
    matmuls, matmul_flops = square_matmuls(device, torch.bfloat16, profile.peak_size)
    steps |= matmuls  # timed in the same rounds as the steps, under the same conditions
    medians = interleaved_medians(steps, profile.rounds, warmup=2, device=device)
    peak = matmul_peak(medians, matmul_flops)
    tokens_per_step = profile.train_batch * profile.context
    flops = flops_per_token(ours, profile.context)
    datasheet = next((tflops for key, tflops in DATASHEET_BF16_TFLOPS.items() if key in name), None)
    contenders = {}
    for contender, seconds in medians.items():
        achieved = flops * tokens_per_step / seconds
        contenders[contender] = {
            "step_seconds": seconds,
            "tokens_per_s": tokens_per_step / seconds,
            "mfu_vs_measured_peak": achieved / peak,
            "mfu_vs_datasheet": achieved / (datasheet * 1e12) if datasheet else None,
        }
    return {
        "shape": {**shape, "batch": profile.train_batch, "dtype": "bf16 autocast"},
        "bf16_matmul_peak_tflops": peak / 1e12,
        "datasheet_bf16_tflops": datasheet,
        "contenders": contenders,
        "speed_vs_transformers": medians["transformers"] / medians["cleanGPT"],
        "compile_cold_start_seconds": cold_start,
    }


@torch.inference_mode()
def check_generation(device: torch.device, profile: Profile) -> dict[str, Any]:
    """Cached greedy generation of ours and transformers' (same weights), new tokens per second."""
    hf_model, ours = gpt2_twins(
        n_layer=profile.n_layer,
        n_head=profile.n_head,
        n_embd=profile.n_embd,
        context=profile.context,
        vocab_size=profile.vocab_size,
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    hf_model, ours = hf_model.to(device, dtype).eval(), ours.to(device, dtype).eval()
    results = {"dtype": str(dtype).removeprefix("torch."), "prompt": profile.prompt, "new_tokens": profile.new_tokens}
    for batch in profile.generation_batches:
        prompt = torch.randint(0, profile.vocab_size, (batch, profile.prompt), device=device)
        medians, same = generation_race(
            hf_model, ours, prompt, profile.new_tokens, max(profile.rounds // 2, 1), device=device
        )
        new = batch * profile.new_tokens
        results[f"batch_{batch}"] = {
            "transformers_tokens_per_s": new / medians["transformers"],
            "cleanGPT_tokens_per_s": new / medians["cleanGPT"],
            "speed_vs_transformers": medians["transformers"] / medians["cleanGPT"],
            "same_tokens": same,
        }
    return results


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()}"


def run_checks(device: torch.device, profile: Profile) -> dict[str, Any]:
    """Every section; one that fails records its error and the others still run."""
    name = device_name(device)
    results: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "profile": asdict(profile),
    }
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "precision": lambda: check_precision(device, profile),
        "distributed": lambda: check_distributed(device),
        "flash_attention": lambda: check_flash_attention(device, profile),
        "training_throughput": lambda: check_training_throughput(device, profile, name),
        "generation": lambda: check_generation(device, profile),
    }
    for section, check in sections.items():
        started = time.perf_counter()
        try:
            results[section] = check()
        except Exception as error:  # a report of what failed is the point of this script
            results[section] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        results[section]["seconds"] = time.perf_counter() - started
        print(f"{section}: {'FAILED ' + results[section]['error'] if 'error' in results[section] else 'ok'}")
    results["targets"] = targets(results)
    return results


def targets(results: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's acceptance figures, where the run measured them (None: not measured)."""
    throughput, generation, precision = (
        results.get(key, {}) for key in ("training_throughput", "generation", "precision")
    )
    ours = throughput.get("contenders", {}).get("cleanGPT", {})
    return {
        "mfu_bf16_at_least_40_percent": ours["mfu_vs_measured_peak"] >= 0.40 if ours else None,
        "training_at_least_1.3x_transformers": throughput["speed_vs_transformers"] >= 1.3 if ours else None,
        "generation_batch_1_at_least_1.5x_transformers": (
            generation["batch_1"]["speed_vs_transformers"] >= 1.5 if "batch_1" in generation else None
        ),
        "mixed_precision_within_tolerance": all(
            precision[mode]["within_tolerance"]
            for mode in ("bf16", "fp16")
            if "within_tolerance" in precision.get(mode, {})
        )
        if "no" in precision
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for <device name>.json")
    arguments = parser.parse_args()
    device = torch.device(arguments.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    results = run_checks(device, GPU if device.type == "cuda" else CPU)
    arguments.out.mkdir(parents=True, exist_ok=True)
    path = arguments.out / (re.sub(r"[^A-Za-z0-9._-]+", "_", results["device"]).strip("_") + ".json")
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"results: {path}")
    print(json.dumps(results["targets"], indent=1))
    failed = [section for section, value in results.items() if isinstance(value, dict) and "error" in value]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
