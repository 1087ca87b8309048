"""The host kernels measured on this machine (`cleangpt_core.kernels`) against PyTorch's own and nanoGPT's.

Four shapes, each a race of interleaved rounds (so a change of machine load hits all alike) between cleanGPT's
Vanilla with the kernels measured here ("tuned"), the same with PyTorch's computation fixed for every operation
("plain", what ``CLEANGPT_KERNELS=plain`` gives), and nanoGPT's own model (its model.py, from --nanogpt):

1. the training step (forward, backward, fused AdamW) at nanoGPT's character shape: 4 layers x 128, 4 heads,
   context 64, batch 12, vocabulary 65, float32;
2. the same with GPT-2's vocabulary (50,257 ids);
3. evaluation (a forward with targets, no gradients) of a 1-layer, 32-wide model, context 64, batch 16, with
   GPT-2's vocabulary;
4. the character shape under bf16 autocast, nanoGPT under the same autocast.

Kernels are measured into a fresh cache file (--cache; a temporary one by default) during the tuned model's
first step, timed apart; the choices made are printed after each race, with the load average (`uptime`)
before and after it and the host's key (CPU model, ISA flags, threads, torch).

    flock -x /tmp/cleangpt-bench.lock python benchmarks/bench_kernels.py --nanogpt /tmp/nanogpt
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_eval_vocab import load_nanogpt
from measure import gpt2_twins, interleaved_medians

from cleangpt_core.kernels import choices_made, fixed
from cleangpt_core.kernels.host import host_key

PLAIN = fixed(linear="plain", gelu="plain", attention="plain", head_loss="plain")
GPT2_VOCAB = 50_257


def load() -> str:
    return "load " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def nano_model(nanogpt: object, vocab_size: int, n_layer: int, n_embd: int, n_head: int) -> torch.nn.Module:
    config = nanogpt.GPTConfig(
        block_size=64, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=0.0, bias=True
    )
    return nanogpt.GPT(config)


def train_steps(nanogpt: object, vocab_size: int, bf16: bool) -> dict[str, Callable[[], None]]:
    """One training step of each contender on the same batch (12 x 64 inputs and their next tokens)."""
    tokens = torch.randint(0, vocab_size, (12, 65), generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def autocast() -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def ours(context: fixed | None) -> Callable[[], None]:
        _, model = gpt2_twins(n_layer=4, n_head=4, n_embd=128, context=64, vocab_size=vocab_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
        model.train()

        def step() -> None:
            with autocast(), context or fixed():
                loss = model(inputs, labels=tokens)["loss"]  # labels one longer: every position has its target
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    nano = nano_model(nanogpt, vocab_size, 4, 128, 4)
    nano_optimizer = nano.configure_optimizers(0.1, 1e-4, (0.9, 0.99), "cpu")  # fused AdamW, as its train.py

    def nano_step() -> None:
        with autocast():
            _, loss = nano(inputs, targets)
        nano_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nano_optimizer.step()

    return {"cleanGPT tuned": ours(None), "cleanGPT plain": ours(PLAIN), "nanoGPT": nano_step}


def eval_steps(nanogpt: object) -> dict[str, Callable[[], None]]:
    """One evaluation batch (16 x 64) of each contender, GPT-2's vocabulary, a 1-layer 32-wide model."""
    tokens = torch.randint(0, GPT2_VOCAB, (16, 65), generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def ours(context: fixed | None) -> Callable[[], None]:
        _, model = gpt2_twins(n_layer=1, n_head=2, n_embd=32, context=64, vocab_size=GPT2_VOCAB)
        model.eval()

        def step() -> None:
            with torch.no_grad(), context or fixed():
                model(inputs, labels=tokens)["loss"].item()

        return step

    nano = nano_model(nanogpt, GPT2_VOCAB, 1, 32, 2).eval()

    def nano_step() -> None:
        with torch.no_grad():
            nano(inputs, targets)[1].item()

    return {"cleanGPT tuned": ours(None), "cleanGPT plain": ours(PLAIN), "nanoGPT": nano_step}


def race(title: str, steps: dict[str, Callable[[], None]], rounds: int, tokens: int) -> None:
    before = load()
    start = time.perf_counter()
    steps["cleanGPT tuned"]()  # the first use measures every shape it meets
    first = time.perf_counter() - start
    shown = set(choices_made())
    medians = interleaved_medians(steps, rounds, warmup=2)
    print(f"\n{title} (median of {rounds}; {before} before, {load()} after)")
    for name, median in medians.items():
        print(
            f"  {name:<15} {median * 1e3:8.1f} ms   {tokens / median:9,.0f} tokens/s   "
            f"{medians['nanoGPT'] / median:.2f}x nanoGPT's speed"
        )
    tuned, plain = medians["cleanGPT tuned"], medians["cleanGPT plain"]
    print(f"  tuned is {plain / tuned:.3f}x plain's speed; its first step, measuring, took {first:.2f} s")
    print(
        "  kernels chosen:",
        ", ".join(f"{shape} {kernel}" for shape, kernel in choices_made().items() if shape in shown),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanogpt", type=Path, default=Path("/tmp/nanogpt"), help="folder holding nanoGPT's model.py")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds of each race")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="kernel cache file (default: a fresh temporary one)")
    parser.add_argument("--only", type=int, nargs="*", help="run only these races (1-4)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    cache = arguments.cache or Path(tempfile.mkdtemp(prefix="cleangpt-bench-kernels-")) / "kernels.json"
    os.environ["CLEANGPT_KERNELS_CACHE"] = str(cache)
    os.environ["CLEANGPT_KERNELS"] = "auto"
    nanogpt = load_nanogpt(arguments.nanogpt)
    print(f"host: {host_key()}")
    print(f"torch {torch.__version__}, CPU capabilities: {torch.backends.cpu.get_cpu_capability()}; cache {cache}")
    races = {
        1: lambda: race("1. train step, char 4 x 128, fp32", train_steps(nanogpt, 65, False), arguments.rounds, 768),
        2: lambda: race(
            "2. train step, GPT-2 vocabulary, 4 x 128, fp32",
            train_steps(nanogpt, GPT2_VOCAB, False),
            arguments.rounds,
            768,
        ),
        3: lambda: race("3. evaluation, GPT-2 vocabulary, 1 x 32, fp32", eval_steps(nanogpt), arguments.rounds, 1024),
        4: lambda: race(
            "4. train step, char 4 x 128, bf16 autocast (nanoGPT too)",
            train_steps(nanogpt, 65, True),
            arguments.rounds,
            768,
        ),
    }
    for number in arguments.only or sorted(races):
        races[number]()


if __name__ == "__main__":
    main()
