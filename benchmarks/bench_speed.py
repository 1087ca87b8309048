"""Training speed against transformers' GPT-2, with MFU, and what the speed switches buy (one run).

1. nanoGPT's character shape (4 layers, 4 heads, 128 wide, context 64, batch 12, vocabulary 65): one
   training step (forward, backward, fused AdamW) of transformers' GPT2LMHeadModel and of our Vanilla model
   with the same weights, both in fp32 and in bf16 autocast, and ours in fp32 with its linear layers on
   MKL (`onednn_linear(False)`), which shows what oneDNN buys. nanoGPT measured 1.25x transformers (fp32,
   as nanoGPT runs on a CPU) on this machine, so ">= 1.55x transformers" means "1.25x nanoGPT".
2. GPT-2 small's shape (12 x 768, context 256, batch 4, vocabulary 50304) in fp32 and in bf16 autocast:
   tokens/s and MFU of both, against a square matmul of the same dtype timed in the same rounds (the
   machine's practical peak under the same load; in fp32 the faster of MKL's and oneDNN's, see
   `cleangpt_core.model.linear`).
3. `trainer.compile` (with --compile): the cold start (the first step, compilation included) and the warm
   step of the compiled model against the eager one, at the character shape.

Steps of the contenders are interleaved, so machine load hits all alike; the ratios are the result.

    flock /tmp/bench.lock python benchmarks/bench_speed.py [--compile] [--rounds 20] [--small-rounds 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from measure import flops_per_token, gpt2_twins, interleaved_medians, matmul_peak, square_matmuls, training_step

from cleangpt_core.kernels import onednn_linear

CPU = torch.device("cpu")


def bf16() -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def report(title: str, medians: dict[str, float], tokens: int, mfu_of: dict[str, float] | None = None) -> None:
    """Print each contender's step time, tokens/s, speed relative to the first, and MFU when given a peak."""
    print(title)
    reference = next(iter(medians.values()))
    for name, seconds in medians.items():
        line = f"  {name:<22} {seconds * 1e3:9.1f} ms/step {tokens / seconds:9.0f} tokens/s {reference / seconds:6.2f}x"
        if mfu_of is not None:
            line += f"   MFU {mfu_of[name] * tokens / seconds:6.1%}"
        print(line)


def character_shape(rounds: int) -> None:
    hf_model, ours = gpt2_twins(n_layer=4, n_head=4, n_embd=128, context=64, vocab_size=65)
    hf_bf16, ours_bf16 = gpt2_twins(n_layer=4, n_head=4, n_embd=128, context=64, vocab_size=65)
    _, ours_mkl = gpt2_twins(n_layer=4, n_head=4, n_embd=128, context=64, vocab_size=65)
    tokens = torch.randint(0, 65, (12, 64), generator=torch.Generator().manual_seed(0))
    medians = interleaved_medians(
        {
            "transformers fp32": training_step(hf_model, tokens),
            "cleanGPT fp32": training_step(ours, tokens),
            "cleanGPT fp32, MKL": training_step(ours_mkl, tokens, context=onednn_linear(False)),
            "transformers bf16": training_step(hf_bf16, tokens, context=bf16()),
            "cleanGPT bf16": training_step(ours_bf16, tokens, context=bf16()),
        },
        rounds,
        warmup=2,
    )
    report("1. character shape: 4 x 128, context 64, batch 12, vocab 65 (ratios to transformers)", medians, 12 * 64)


def gpt2_small_shape(rounds: int) -> None:
    shape = {"n_layer": 12, "n_head": 12, "n_embd": 768, "context": 256, "vocab_size": 50304}
    tokens = torch.randint(0, 50304, (4, 256), generator=torch.Generator().manual_seed(0))
    for dtype, torch_dtype, autocast in (("fp32", torch.float32, None), ("bf16", torch.bfloat16, bf16)):
        hf_model, ours = gpt2_twins(**shape)
        flops = flops_per_token(ours, 256)
        # the peak is a contender too: measured in the same rounds, under the same load, as the steps
        matmuls, matmul_flops = square_matmuls(CPU, torch_dtype, 2048)
        medians = interleaved_medians(
            {
                f"transformers {dtype}": training_step(hf_model, tokens, context=autocast and autocast()),
                f"cleanGPT {dtype}": training_step(ours, tokens, context=autocast and autocast()),
                **matmuls,
            },
            rounds,
        )
        peak = matmul_peak(medians, matmul_flops)
        mfu = {name: flops / peak for name in medians}
        title = f"2. GPT-2 small: 12 x 768, context 256, batch 4, vocab 50304, {dtype} (peak {peak / 1e9:.0f} GFLOP/s)"
        report(title, medians, 4 * 256, mfu)
        del hf_model, ours


def compile_effect(rounds: int) -> None:
    _, eager = gpt2_twins(n_layer=4, n_head=4, n_embd=128, context=64, vocab_size=65)
    _, compiled = gpt2_twins(n_layer=4, n_head=4, n_embd=128, context=64, vocab_size=65)
    compiled.compile()  # what trainer.compile does
    tokens = torch.randint(0, 65, (12, 64), generator=torch.Generator().manual_seed(0))
    steps = {"eager fp32": training_step(eager, tokens), "compiled fp32": training_step(compiled, tokens)}
    with tempfile.TemporaryDirectory() as cache:  # a first run: nothing compiled before on this machine
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        start = time.perf_counter()
        steps["compiled fp32"]()
        cold = time.perf_counter() - start
    medians = interleaved_medians(steps, rounds, warmup=2)
    report("3. trainer.compile at the character shape (ratio to eager)", medians, 12 * 64)
    print(f"  cold start (empty compile cache): {cold:.1f} s for the first step (eager: {medians['eager fp32']:.3f} s)")
    saved = medians["eager fp32"] - medians["compiled fp32"]
    print(f"  break-even after {cold / saved:,.0f} steps" if saved > 0 else "  compiled is not faster: no break-even")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds at the character shape")
    parser.add_argument("--small-rounds", type=int, default=5, help="timed rounds at GPT-2 small's shape")
    parser.add_argument("--compile", action="store_true", help="also measure trainer.compile (slow cold start)")
    arguments = parser.parse_args()
    character_shape(arguments.rounds)
    gpt2_small_shape(arguments.small_rounds)
    if arguments.compile:
        compile_effect(arguments.rounds)


if __name__ == "__main__":
    main()
