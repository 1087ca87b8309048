"""The float32 GEMM choice measured by `cleangpt_core.kernels`, checked on this CPU and on it held to AVX2.

The character-shape training step (4 layers x 128, 4 heads, context 64, batch 12, vocabulary 65, fp32) of
cleanGPT's Vanilla with the kernels measured on this host, with MKL forced (`onednn_linear(False)`, PyTorch's
default) and nanoGPT's own model (its model.py, from --nanogpt), interleaved in one process. The process runs
twice: as the machine is, and with ``ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``, which make both
libraries behave as on an AVX2-only CPU. The choice must never be slower than MKL, and at least level with
nanoGPT, on both.

    flock /tmp/cleangpt-bench.lock python benchmarks/bench_cpu_gemm.py --nanogpt /work/nanogpt
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch
from bench_eval_vocab import load_nanogpt
from measure import gpt2_twins, interleaved_medians, training_step

from cleangpt_core.kernels import choices_made, onednn_linear

AVX2_LIMITS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "context": 64, "vocab_size": 65}


def measure(nanogpt_dir: Path, steps: int) -> None:
    """In this process: the three contenders, interleaved; prints their medians and ratios."""
    torch.set_num_threads(2)
    tokens = torch.randint(0, 65, (12, 65), generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    _, chosen = gpt2_twins(**SHAPE)
    _, mkl = gpt2_twins(**SHAPE)
    nanogpt = load_nanogpt(nanogpt_dir)
    nano = nanogpt.GPT(nanogpt.GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0))
    nano_optimizer = nano.configure_optimizers(0.1, 1e-4, (0.9, 0.99), "cpu")

    def nano_step() -> None:
        _, loss = nano(inputs, targets)
        nano_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nano_optimizer.step()

    medians = interleaved_medians(
        {
            "cleanGPT": training_step(chosen, inputs),
            "cleanGPT, MKL": training_step(mkl, inputs, context=onednn_linear(False)),
            "nanoGPT": nano_step,
        },
        steps,
        warmup=3,
    )
    limits = {key: os.environ[key] for key in AVX2_LIMITS if key in os.environ}
    products = sorted({kernel for shape, kernel in choices_made().items() if shape.startswith("linear|")})
    print(f"{limits or 'no ISA limits'}: the host chose {', '.join(products) or 'plain'} for its float32 products")
    for name, median in medians.items():
        print(f"  {name:<14} {median * 1e3:7.1f} ms/step   {medians['nanoGPT'] / median:.2f}x nanoGPT's speed")
    print(f"  the choice is {medians['cleanGPT, MKL'] / medians['cleanGPT']:.2f}x the speed of MKL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanogpt", type=Path, default=Path("/work/nanogpt"), help="folder holding nanoGPT's model.py")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each contender")
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.here:
        measure(arguments.nanogpt, arguments.steps)
        return
    for extra in ({}, AVX2_LIMITS):
        command = [
            sys.executable,
            __file__,
            "--here",
            "--nanogpt",
            str(arguments.nanogpt),
            "--steps",
            str(arguments.steps),
        ]
        subprocess.run(command, env={**os.environ, **extra}, check=True)


if __name__ == "__main__":
    main()
