"""The acceptance run on one GPU, in one go (under 8 minutes on an H100/H200), or a tiny path of the same code on
a CPU. It writes one JSON and one markdown table to ``--out`` (``benchmarks/results/`` by default).

1. cuda_tests: the test suite's CUDA-marked tests (``pytest -m cuda``).
2. precision: our AdvancedTrainer on the tiny counting problem in fp32, bf16 and fp16 + GradScaler; each loss
   curve must stay within tolerance of fp32's (mean of the last quarter of steps).
3. distributed: FSDP2 through our strategy code in a one-process nccl group (gloo on CPU), fp32 and fp16 with
   the sharded gradient scaler; with N > 1 GPUs also the tiny trainer under torchrun with N processes.
4. training: train steps of GPT-2 small (12 x 768, context 1024, vocabulary 50304, bf16 autocast, fused
   AdamW): ours eager and compiled, transformers' GPT2LMHeadModel (same weights) eager and compiled, and
   nanoGPT's model compiled (from its checkout, ``--nanogpt PATH``), interleaved. MFU of each against the
   card's datasheet peak (dense bf16 tensor-core FLOP/s, looked up by the exact model name; none for a card
   not in `DATASHEETS`) and against a bf16 square matmul timed in the same rounds (what the card reaches in
   practice: some 70-80 % of the datasheet on an H100). Ours and nanoGPT's run with SDPA restricted to the
   flash and cuDNN kernels, so they prove that attention runs on one of them (SDPA raises if neither can).
5. generation: cached greedy generation against transformers' ``generate``, batch 1 and 32.
6. largest_model: the largest GPT-2-shaped model whose training step (fp32 weights, fused AdamW, bf16 autocast,
   activation checkpointing) fits the card at context 1024.

Each section that fails records its error and the others still run; transformers or a nanoGPT checkout that
is missing is reported in one line and its contender skipped.

The targets, for the compiled GPT-2-small step: MFU >= 40 % of the datasheet's bf16 peak, >= 1.3x the
compiled transformers step, >= 1.0x nanoGPT + torch.compile; the whole run under 8 minutes.

    python benchmarks/gpu_check.py --nanogpt ~/nanoGPT     # on a GPU machine
    python benchmarks/gpu_check.py --dry-run --out DIR     # the tiny CPU path (tests/test_gpu_check.py runs it)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from measure import flops_per_token, generation_race, gpt2_twins, interleaved_medians, matmul_peak, square_matmuls
from measure import training_step as plain_training_step
from torch.nn.attention import SDPBackend, sdpa_kernel

from cleangpt_core.distributed.process_group import backend_for
from cleangpt_core.distributed.strategies import full_model_state, gradient_scaler, prepare_model
from cleangpt_core.model import get_model
from cleangpt_core.testing.trainer import tiny_loaders, tiny_model
from cleangpt_core.trainers import get_trainer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LOSS_TOLERANCE = 0.05  # |mean loss of the last quarter - fp32's|, on a problem whose loss falls by > 1
FAST_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION]  # the only SDPA kernels allowed
# the targets for the compiled GPT-2-small step: MFU against the datasheet, speed against the compiled others
TARGET_MFU, TARGET_VS_TRANSFORMERS, TARGET_VS_NANOGPT = 0.40, 1.3, 1.0


@dataclass(frozen=True)
class Datasheet:
    """A card's dense bf16 tensor-core peak (bf16 in, fp32 accumulate; not the 2:4-sparsity figure) as its
    maker's datasheet gives it, and the names ``torch.cuda.get_device_name`` reports for it (matched whole)."""

    card: str
    bf16_tflops: float
    names: str  # a regular expression for the whole device name


DATASHEETS = (
    Datasheet("H100 SXM", 989.4, r"NVIDIA H100( 80GB HBM3| SXM5? ?\w*)?"),  # 1,979 with sparsity
    Datasheet("H100 PCIe", 756.5, r"NVIDIA H100 PCIe"),  # 1,513 with sparsity
    Datasheet("H100 NVL", 835.5, r"NVIDIA H100 NVL"),  # 1,671 with sparsity
    Datasheet("H200 SXM", 989.4, r"NVIDIA H200( 141GB HBM3e)?"),  # as the H100 SXM's
    Datasheet("H200 NVL", 835.5, r"NVIDIA H200 NVL"),
    Datasheet("A100 40GB", 312.0, r"NVIDIA A100[- ](SXM4-40GB|PCIE-40GB|40GB PCIe)"),
    Datasheet("A100 80GB", 312.0, r"NVIDIA A100[- ](SXM4-80GB|PCIE-80GB|80GB PCIe)"),
    Datasheet("L4", 121.0, r"NVIDIA L4"),  # 242 with sparsity
    Datasheet("L40S", 362.05, r"NVIDIA L40S"),  # 733 with sparsity
    Datasheet("A10", 125.0, r"NVIDIA A10"),  # 250 with sparsity
    # AWS's variant of the A10; NVIDIA publishes no datasheet for it: 70 as AWS's and NVIDIA's spec tables give it
    Datasheet("A10G", 70.0, r"NVIDIA A10G"),
    Datasheet("RTX 4090", 165.2, r"NVIDIA GeForce RTX 4090"),  # with fp32 accumulate (330.3 with fp16 accumulate)
)


def datasheet_for(device_name: str) -> Datasheet | None:
    """The datasheet of the card named `device_name` exactly (an L40S is no L4, an A10G no A10), or None."""
    return next((sheet for sheet in DATASHEETS if re.fullmatch(sheet.names, device_name.strip())), None)


@dataclass(frozen=True)
class Profile:
    """The sizes of one path: the GPU's are the issue's, the CPU's keep the same code to seconds."""

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
    compile_backend: str  # inductor on a GPU; aot_eager on a CPU (the same tracing, no C++ build)
    ladder: tuple[tuple[int, int, int], ...]  # (n_layer, n_head, n_embd) of the largest-model search, ascending
    ladder_batch: int
    cuda_tests: tuple[str, ...]  # pytest paths (none: the project's testpaths)


GPU = Profile(
    120, 12, 12, 768, 1024, 50304, 8, 10, 8192, 64, 128, (1, 32), "inductor",
    # GPT-2 124M, 350M, 774M, 1.5B, then 2.4B, 3.8B, 7.2B and 9.6B parameters (16 bytes each with AdamW)
    ((12, 12, 768), (24, 16, 1024), (36, 20, 1280), (48, 25, 1600), (48, 32, 2048), (48, 40, 2560),
     (64, 48, 3072), (72, 52, 3328)),
    4, (),
)  # fmt: skip
CPU = Profile(
    12, 2, 2, 64, 64, 256, 2, 2, 256, 8, 8, (1, 4), "aot_eager", ((1, 2, 32), (2, 2, 64)), 2, ("tests/test_cuda.py",)
)


def autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16)


def fast_attention_autocast(device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast with SDPA limited to the flash and cuDNN kernels (SDPA raises if neither takes a call)."""
    stack = ExitStack()
    stack.enter_context(sdpa_kernel(FAST_ATTENTION))
    stack.enter_context(autocast(device))
    return stack


class Contexts:
    """A fresh context manager per use (an ExitStack cannot be entered twice)."""

    def __init__(self, make: Callable[[], AbstractContextManager[Any]]) -> None:
        self.make = make
        self._open: list[AbstractContextManager[Any]] = []

    def __enter__(self) -> None:
        context = self.make()
        self._open.append(context)
        context.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._open.pop().__exit__(*exc_info)


def run_cuda_tests(profile: Profile) -> dict[str, Any]:
    """The test suite's CUDA-marked tests, in a pytest of their own."""
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *profile.cuda_tests]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else done.stderr.strip()[-300:]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    result = {"command": " ".join(command[2:]), "summary": summary, "counts": counts}
    if done.returncode not in (0, 5):  # 5: nothing collected
        result["error"] = f"pytest -m cuda failed: {summary}"
        result["output_tail"] = done.stdout[-4000:]
    return result


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
    """FSDP2 through our strategy code in a one-process group of the device's backend; with several GPUs, the
    tiny trainer under torchrun with one process per GPU."""
    result = _fsdp_in_one_process(device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus > 1:
        result["torchrun"] = _fsdp_under_torchrun(gpus)
    else:
        result["torchrun"] = {"skipped": "one device: FSDP2 checked in one process above (torchrun runs one per GPU)"}
    return result


def _fsdp_in_one_process(device: torch.device) -> dict[str, Any]:
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


def _fsdp_under_torchrun(processes: int) -> dict[str, Any]:
    """The tiny trainer with trainer.strategy=fsdp under torchrun, one process per GPU, in bf16."""
    losses = RESULTS.parent / ".gpu_check_fsdp_losses.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += ["-m", "cleangpt_core.testing.trainer", "--strategy", "fsdp", "--device", "cuda", "--epochs", "1"]
    command += ["--mixed-precision", "bf16", "--losses-out", str(losses)]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, timeout=300)
    curve = json.loads(losses.read_text())
    losses.unlink()
    return {"processes": processes, "seconds": time.perf_counter() - started, "losses": curve}


def _nanogpt_model(checkout: Path | None, profile: Profile, device: torch.device) -> tuple[Any, str | None]:
    """nanoGPT's GPT at our shape from its checkout's model.py, or None and the one line that says why not."""
    if checkout is None:
        return None, "nanoGPT: skipped (no checkout given; pass --nanogpt PATH to a clone of karpathy/nanoGPT)"
    source = checkout / "model.py"
    if not source.is_file():
        return None, f"nanoGPT: skipped ({source} does not exist; --nanogpt must name a nanoGPT checkout)"
    spec = importlib.util.spec_from_file_location("nanogpt_model", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.GPTConfig(
        block_size=profile.context,
        vocab_size=profile.vocab_size,
        n_layer=profile.n_layer,
        n_head=profile.n_head,
        n_embd=profile.n_embd,
        dropout=0.0,
        bias=True,  # GPT-2's layout, as ours and transformers'
    )
    return module.GPT(config).to(device), None


def _nanogpt_step(model: torch.nn.Module, tokens: torch.Tensor, context: Contexts) -> Callable[[], None]:
    """One training step of nanoGPT's model, which returns (logits, loss) and shifts nothing itself: `tokens` has
    one position more than the context, so it trains on as many positions as the others."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()  # its loss views them flat

    def step() -> None:
        with context:
            _, loss = model(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def check_training(device: torch.device, profile: Profile, name: str, nanogpt: Path | None) -> dict[str, Any]:
    """GPT-2 small's training step: ours eager and compiled, transformers' eager and compiled, nanoGPT's compiled;
    the MFU of each against the datasheet's peak and against the measured matmul."""
    shape = {
        "n_layer": profile.n_layer,
        "n_head": profile.n_head,
        "n_embd": profile.n_embd,
        "context": profile.context,
        "vocab_size": profile.vocab_size,
    }
    notes: list[str] = []
    tokens = torch.randint(0, profile.vocab_size, (profile.train_batch, profile.context), device=device)
    fast = Contexts(lambda: fast_attention_autocast(device))
    plain = Contexts(lambda: autocast(device))
    steps: dict[str, Callable[[], None]] = {}
    cold: dict[str, float] = {}
    try:
        hf_model, ours = gpt2_twins(**shape)
        hf_compiled = copy.deepcopy(hf_model).to(device)
        hf_compiled.compile(backend=profile.compile_backend)
        steps["transformers eager"] = plain_training_step(hf_model.to(device), tokens, context=plain)
        steps["transformers compiled"] = plain_training_step(hf_compiled, tokens, context=plain)
        cold["transformers compiled"] = _cold_start(steps["transformers compiled"], device)
    except ImportError as error:
        notes.append(f"transformers: skipped ({error}); install transformers to compare with GPT2LMHeadModel")
        torch.manual_seed(0)
        ours = _our_gpt2(shape)
    steps["cleanGPT"] = plain_training_step(ours.to(device), tokens, context=fast)
    torch.manual_seed(0)
    compiled = _our_gpt2(shape).to(device)
    compiled.compile(backend=profile.compile_backend)  # what trainer.compile does (inductor on a GPU)
    steps["cleanGPT compiled"] = plain_training_step(compiled, tokens, context=fast)
    cold["cleanGPT compiled"] = _cold_start(steps["cleanGPT compiled"], device)
    model, skipped = _nanogpt_model(nanogpt, profile, device)
    if model is None:
        notes.append(skipped)
    else:
        model = torch.compile(model, backend=profile.compile_backend)
        longer = torch.randint(0, profile.vocab_size, (profile.train_batch, profile.context + 1), device=device)
        steps["nanoGPT compiled"] = _nanogpt_step(model, longer, fast)
        cold["nanoGPT compiled"] = _cold_start(steps["nanoGPT compiled"], device)
    sheet = datasheet_for(name)
    if sheet is None:
        notes.append(f"no datasheet peak for {name!r}: MFU is given against the measured matmul only")
    for note in notes:
        print(note)
    matmuls, matmul_flops = square_matmuls(device, torch.bfloat16, profile.peak_size)
    if device.type == "cpu":  # without AVX512-BF16 or AMX, bf16 products are emulated, far below float32's
        fp32_matmuls, _ = square_matmuls(device, torch.float32, profile.peak_size)
        matmuls |= {f"{name} fp32": product for name, product in fp32_matmuls.items()}
    steps |= matmuls  # timed in the same rounds as the steps, under the same conditions
    medians = interleaved_medians(steps, profile.rounds, warmup=2, device=device)
    peak = matmul_peak(medians, matmul_flops)
    tokens_per_step = profile.train_batch * profile.context
    flops = flops_per_token(compiled, profile.context)
    contenders = {}
    for contender, seconds in medians.items():
        achieved = flops * tokens_per_step / seconds
        contenders[contender] = {
            "step_seconds": seconds,
            "tokens_per_s": tokens_per_step / seconds,
            "mfu_vs_datasheet": achieved / (sheet.bf16_tflops * 1e12) if sheet else None,
            "mfu_vs_measured_matmul": achieved / peak,
        }
    ratios = {
        f"compiled_vs_{other.replace(' ', '_')}": medians[other] / medians["cleanGPT compiled"]
        for other in ("transformers compiled", "transformers eager", "nanoGPT compiled")
        if other in medians
    }
    return {
        "shape": {**shape, "batch": profile.train_batch, "dtype": "bf16 autocast", "optimizer": "fused AdamW"},
        "attention_kernels_allowed": [backend.name for backend in FAST_ATTENTION],
        "datasheet": asdict(sheet) if sheet else None,
        "matmul_peak_tflops": peak / 1e12,  # bf16 on a GPU; the faster of bf16 and fp32 on a CPU
        "matmul_peak_vs_datasheet": peak / (sheet.bf16_tflops * 1e12) if sheet else None,
        "contenders": contenders,
        **ratios,
        "compile_backend": profile.compile_backend,
        "compile_cold_start_seconds": cold,
        "notes": notes,
    }


def _our_gpt2(shape: dict[str, int]) -> torch.nn.Module:
    return get_model(
        "Vanilla",
        vocab_size=shape["vocab_size"],
        n_layer=shape["n_layer"],
        n_head=shape["n_head"],
        n_embd=shape["n_embd"],
        block_size=shape["context"],
        dropout=0.0,
    )


def _cold_start(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of the first step (compilation included)."""
    started = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


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


def check_largest_model(device: torch.device, profile: Profile) -> dict[str, Any]:
    """Climb the ladder of GPT-2 shapes until a training step no longer fits the device (context 1024 on a GPU).

    Each rung: fp32 weights built on the device, activation checkpointing per block, bf16 autocast, fused
    AdamW, two steps of `ladder_batch` sequences; its peak memory is recorded.
    """
    rungs: list[dict[str, Any]] = []
    largest = None
    for n_layer, n_head, n_embd in profile.ladder:
        rung: dict[str, Any] = {"n_layer": n_layer, "n_head": n_head, "n_embd": n_embd}
        model = optimizer = None
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with torch.device(device):
                model = get_model(
                    "Vanilla",
                    vocab_size=profile.vocab_size,
                    n_layer=n_layer,
                    n_head=n_head,
                    n_embd=n_embd,
                    block_size=profile.context,
                    dropout=0.0,
                )
            rung["parameters"] = sum(p.numel() for p in model.parameters())
            model = prepare_model(model, "none", device, activation_checkpointing=True)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            tokens = torch.randint(0, profile.vocab_size, (profile.ladder_batch, profile.context), device=device)
            started = time.perf_counter()
            for _ in range(2):
                with fast_attention_autocast(device):
                    loss = model(tokens, labels=tokens)["loss"]
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            rung["loss"] = loss.item()
            rung["seconds_per_step"] = (time.perf_counter() - started) / 2
            if device.type == "cuda":
                rung["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            rung["trains"] = True
            largest = rung
        except torch.OutOfMemoryError as error:
            rung.update(trains=False, error=str(error).splitlines()[0])
        finally:
            del model, optimizer
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rungs.append(rung)
        if not rung["trains"]:
            break
    return {
        "context": profile.context,
        "batch": profile.ladder_batch,
        "largest": largest,
        "rungs": rungs,
        "ladder_exhausted": bool(rungs) and rungs[-1]["trains"],
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()}"


def run_checks(device: torch.device, profile: Profile, nanogpt: Path | None = None) -> dict[str, Any]:
    """Every section; one that fails records its error and the others still run."""
    name = device_name(device)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "profile": asdict(profile),
    }
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "cuda_tests": lambda: run_cuda_tests(profile),
        "precision": lambda: check_precision(device, profile),
        "distributed": lambda: check_distributed(device),
        "training": lambda: check_training(device, profile, name, nanogpt),
        "generation": lambda: check_generation(device, profile),
        "largest_model": lambda: check_largest_model(device, profile),
    }
    for section, check in sections.items():
        section_started = time.perf_counter()
        try:
            results[section] = check()
        except ImportError as error:  # transformers missing: say so in one line, keep going
            results[section] = {"skipped": f"{section}: skipped ({error})"}
        except Exception as error:  # a report of what failed is the point of this script
            results[section] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        results[section]["seconds"] = time.perf_counter() - section_started
        state = results[section]
        print(f"{section}: {'FAILED ' + state['error'] if 'error' in state else state.get('skipped', 'ok')}")
    results["total_seconds"] = time.perf_counter() - started
    results["targets"] = targets(results)
    return results


def targets(results: dict[str, Any]) -> dict[str, bool | None]:
    """The acceptance figures, where the run measured them (None: not measured, e.g. no datasheet for the card)."""
    training, precision = results.get("training", {}), results.get("precision", {})
    compiled = training.get("contenders", {}).get("cleanGPT compiled") or {}
    mfu = compiled.get("mfu_vs_datasheet")

    def at_least(key: str, target: float) -> bool | None:
        return training[key] >= target if key in training else None

    return {
        f"compiled_mfu_vs_datasheet_at_least_{TARGET_MFU:.0%}": mfu >= TARGET_MFU if mfu is not None else None,
        f"compiled_at_least_{TARGET_VS_TRANSFORMERS}x_transformers_compiled": at_least(
            "compiled_vs_transformers_compiled", TARGET_VS_TRANSFORMERS
        ),
        f"compiled_at_least_{TARGET_VS_NANOGPT}x_nanogpt_compiled": at_least(
            "compiled_vs_nanoGPT_compiled", TARGET_VS_NANOGPT
        ),
        "mixed_precision_within_tolerance": all(
            precision[mode]["within_tolerance"]
            for mode in ("bf16", "fp16")
            if "within_tolerance" in precision.get(mode, {})
        )
        if "no" in precision
        else None,
        "cuda_tests_pass": "counts" in results.get("cuda_tests", {}) and "error" not in results["cuda_tests"],
        "under_8_minutes": results["total_seconds"] < 480,
    }


def markdown(results: dict[str, Any]) -> str:
    """The run as one table: each figure, its target where one is set, and whether it is met."""
    rows = [("section", "figure", "value", "target")]
    for section in ("cuda_tests", "precision", "distributed", "training", "generation", "largest_model"):
        state = results.get(section, {})
        if "error" in state or "skipped" in state:
            rows.append((section, "status", state.get("error", state.get("skipped", "")).splitlines()[0], ""))
    training = results.get("training", {})
    sheet = training.get("datasheet")
    if "matmul_peak_tflops" in training:
        measured = f"{training['matmul_peak_tflops']:,.1f} TFLOP/s"
        if sheet:
            measured += f" ({training['matmul_peak_vs_datasheet']:.0%} of the datasheet)"
        datasheet = f"{sheet['card']}: {sheet['bf16_tflops']:,.1f} TFLOP/s" if sheet else "none for this device"
        rows.append(("training", "bf16 peak, datasheet (dense)", datasheet, ""))
        rows.append(("training", "bf16 peak, measured square matmul", measured, ""))
    for contender, figures in training.get("contenders", {}).items():
        target = f">= {TARGET_MFU:.0%}" if contender == "cleanGPT compiled" else ""
        mfu = figures["mfu_vs_datasheet"]
        rows.append(("training", f"{contender}: MFU (datasheet)", f"{mfu:.1%}" if mfu is not None else "n/a", target))
        rows.append(("training", f"{contender}: MFU (measured matmul)", f"{figures['mfu_vs_measured_matmul']:.1%}", ""))
        rows.append(("training", f"{contender}: tokens/s", f"{figures['tokens_per_s']:,.0f}", ""))
    for key, target in (
        ("compiled_vs_transformers_compiled", f">= {TARGET_VS_TRANSFORMERS}x"),
        ("compiled_vs_transformers_eager", ""),
        ("compiled_vs_nanoGPT_compiled", f">= {TARGET_VS_NANOGPT}x"),
    ):
        if key in training:
            rows.append(("training", key.replace("_", " "), f"{training[key]:.2f}x", target))
    for note in training.get("notes", []):
        rows.append(("training", "note", note, ""))
    for key, figures in results.get("generation", {}).items():
        if key.startswith("batch_"):
            speed = f"{figures['speed_vs_transformers']:.2f}x (same tokens: {figures['same_tokens']})"
            rows.append(("generation", f"{key.replace('_', ' ')}: vs transformers", speed, ""))
    largest = results.get("largest_model", {}).get("largest")
    if largest:
        shape = f"{largest['n_layer']} x {largest['n_embd']}: {largest['parameters'] / 1e6:,.1f}M parameters"
        rows.append(("largest_model", "trains at context " + str(results["largest_model"]["context"]), shape, ""))
    cuda_tests = results.get("cuda_tests", {})
    if "summary" in cuda_tests:
        rows.append(("cuda_tests", "pytest -m cuda", cuda_tests["summary"], "all pass"))
    rows.append(("total", "seconds", f"{results['total_seconds']:.0f}", "< 480"))
    lines = [f"# GPU check: {results['device']} (torch {results['torch']}, {results['when']})", ""]
    lines += ["| " + " | ".join(row) + " |" for row in rows[:1]]
    lines.append("| --- | --- | --- | --- |")
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows[1:]]
    lines += ["", "Targets: " + ", ".join(f"{key}: {value}" for key, value in results["targets"].items()), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dry-run", action="store_true", help="the tiny CPU path: every section and the report, in a minute or two"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for <device name>.json and .md")
    parser.add_argument("--nanogpt", type=Path, help="a checkout of karpathy/nanoGPT (its model.py is compared)")
    arguments = parser.parse_args()
    device = torch.device("cpu" if arguments.dry_run else arguments.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    results = run_checks(device, GPU if device.type == "cuda" else CPU, arguments.nanogpt)
    arguments.out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", results["device"]).strip("_")
    path = arguments.out / f"{stem}.json"
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (arguments.out / f"{stem}.md").write_text(markdown(results), encoding="utf-8")
    print(f"results: {path} and {path.with_suffix('.md')}")
    print(json.dumps(results["targets"], indent=1))
    failed = [section for section, value in results.items() if isinstance(value, dict) and "error" in value]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
