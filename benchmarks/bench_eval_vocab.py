"""A GPT-2-sized vocabulary (50,257 ids) on a small model: where the output layer and its loss dominate.

1. Evaluation throughput of a 1-layer, 32-wide Vanilla model (context 64, 16 windows a batch) through the
   real path (`evaluate_model` over a `TokenBlockDataset`), with the head and loss computed chunk by chunk
   (`cleangpt_core.kernels.chunked_loss`, where the host measured it faster) and as
   before, whole (B, T, 50,257) logits then cross-entropy. Rounds interleaved; tokens/s and the process's
   user and system CPU seconds for each.
2. The training step (forward, backward, fused AdamW) at nanoGPT's character shape with the GPT-2
   vocabulary (4 layers x 128, 4 heads, context 64, batch 12): cleanGPT's Vanilla chunked and whole,
   nanoGPT's own model (its model.py, from a checkout given by --nanogpt) and transformers' GPT-2,
   interleaved; then each one's peak memory, from a fresh process per contender (its peak resident set
   over three steps, less what it held before them).

    flock /tmp/cleangpt-bench.lock python benchmarks/bench_eval_vocab.py --nanogpt /work/nanogpt
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from measure import gpt2_twins, interleaved_medians, training_step
from torch.utils.data import DataLoader

from cleangpt_core.data.windows import TokenBlockDataset
from cleangpt_core.kernels import chunked_head
from cleangpt_core.kernels.chunked_loss import EVAL_CHUNK_ELEMENTS, TRAIN_CHUNK_ELEMENTS
from cleangpt_core.model import get_model
from cleangpt_core.trainers.evaluation import evaluate_model

VOCAB = 50_257
WHOLE = 1 << 62  # chunk nothing: the (B, T, V) logits, as before
TRAIN_SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "context": 64}
TRAIN_BATCH = 12


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def evaluation(eval_tokens: int, rounds: int) -> None:
    """Part 1: the same evaluation, chunked and whole, `rounds` times each in turn."""
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32, block_size=64)
    stream = np.random.default_rng(0).integers(0, VOCAB, eval_tokens + 1).astype(np.uint16)
    loader = DataLoader(TokenBlockDataset(stream, 64, final_label=True), batch_size=16)
    totals = {name: [0.0, 0.0, 0.0] for name in ("chunked", "whole")}
    losses = {}
    for _ in range(rounds):
        for name, elements in (("chunked", EVAL_CHUNK_ELEMENTS), ("whole", WHOLE)):
            wall, (user, system) = time.perf_counter(), cpu_seconds()
            with chunked_head(elements):
                result = evaluate_model(model, loader, torch.device("cpu"))
            after_user, after_system = cpu_seconds()
            spent = totals[name]
            spent[0] += time.perf_counter() - wall
            spent[1] += after_user - user
            spent[2] += after_system - system
            losses[name] = result["loss"]
    print(f"1. evaluation, Vanilla 1 x 32, vocabulary {VOCAB:,}, batch 16 x 64, {eval_tokens:,} tokens x {rounds}")
    for name, (wall, user, system) in totals.items():
        rate = eval_tokens * rounds / wall
        print(f"  {name:<8} {rate:10,.0f} tokens/s   wall {wall:7.2f} s   user {user:7.2f} s   system {system:7.2f} s")
    print(
        f"  chunked is {totals['whole'][0] / totals['chunked'][0]:.2f}x the speed of whole logits; "
        f"losses {losses['chunked']:.6f} and {losses['whole']:.6f}"
    )


def load_nanogpt(folder: Path) -> object:
    """nanoGPT's model module, from its model.py (kept outside this project)."""
    spec = importlib.util.spec_from_file_location("nanogpt_model", folder / "model.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"{folder / 'model.py'} not found: pass --nanogpt DIR, a checkout of karpathy/nanoGPT")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def contenders(nanogpt_dir: Path, tokens: torch.Tensor) -> dict[str, Callable[[], None]]:
    """One training step of each contender on `tokens` (batch 12 x 65: inputs and their next tokens)."""
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()  # nanoGPT views its targets
    hf_model, ours = gpt2_twins(**TRAIN_SHAPE, vocab_size=VOCAB)
    _, ours_whole = gpt2_twins(**TRAIN_SHAPE, vocab_size=VOCAB)
    nanogpt = load_nanogpt(nanogpt_dir)
    config = nanogpt.GPTConfig(
        block_size=TRAIN_SHAPE["context"], vocab_size=VOCAB, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False
    )
    nano = nanogpt.GPT(config)
    nano_optimizer = nano.configure_optimizers(0.1, 1e-4, (0.9, 0.99), "cpu")  # fused AdamW, as its train.py

    def nano_step() -> None:
        _, loss = nano(inputs, targets)
        nano_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nano_optimizer.step()

    return {
        "cleanGPT": _step(ours, inputs, tokens),
        "cleanGPT whole": _step(ours_whole, inputs, tokens, whole_logits=True),
        "nanoGPT": nano_step,
        "transformers": training_step(hf_model, inputs),
    }


def _step(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, whole_logits: bool = False
) -> Callable[[], None]:
    """A training step of our model, with its final label (labels one longer than the inputs)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    model.train()

    def step() -> None:
        with chunked_head(WHOLE if whole_logits else TRAIN_CHUNK_ELEMENTS):
            loss = model(inputs, labels=labels)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def train_tokens() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (TRAIN_BATCH, TRAIN_SHAPE["context"] + 1), generator=generator)


def training(nanogpt_dir: Path, rounds: int) -> None:
    """Part 2: interleaved step times, then each contender's peak memory in a process of its own."""
    tokens = train_tokens()
    medians = interleaved_medians(contenders(nanogpt_dir, tokens), rounds, warmup=2)
    print(
        f"2. train step, 4 layers x 128, 4 heads, vocabulary {VOCAB:,}, batch {TRAIN_BATCH} x 64 (median of {rounds})"
    )
    for name, median in medians.items():
        print(f"  {name:<15} {median * 1e3:8.1f} ms/step   {medians['nanoGPT'] / median:.2f}x nanoGPT's speed")
    peaks = {}
    for name in medians:  # nanoGPT prints its parameter count first: the JSON is the last line
        command = [sys.executable, __file__, "--peak-of", name, "--nanogpt", str(nanogpt_dir)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        peaks[name] = json.loads(output.strip().splitlines()[-1])["peak_mb"]
    for name, peak in peaks.items():
        print(f"  {name:<15} peak resident memory +{peak:6.0f} MB over three steps")


def memory_kib(field: str) -> int:
    """A field of /proc/self/status in KiB: VmRSS (resident now) or VmHWM (the resident set's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/self/status has no {field}: the peak-memory measurement needs Linux")


def peak_of(name: str, nanogpt_dir: Path) -> None:
    """In this fresh process: how far the resident set rises above its level before three steps of one contender.

    The peak is reset first (writing 5 to /proc/self/clear_refs, Linux 4.0+): building the four contenders
    raised it above anything one step needs, which is why the process-lifetime peak (ru_maxrss) read 0.
    """
    step = contenders(nanogpt_dir, train_tokens())[name]
    Path("/proc/self/clear_refs").write_text("5")
    before = memory_kib("VmRSS")
    for _ in range(3):
        step()
    print(json.dumps({"peak_mb": (memory_kib("VmHWM") - before) / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanogpt", type=Path, default=Path("/work/nanogpt"), help="folder holding nanoGPT's model.py")
    parser.add_argument("--eval-tokens", type=int, default=65_536, help="tokens per evaluation round")
    parser.add_argument("--rounds", type=int, default=3, help="evaluation rounds of each kind")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps of each contender")
    parser.add_argument("--peak-of", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    torch.set_num_threads(2)
    if arguments.peak_of:
        peak_of(arguments.peak_of, arguments.nanogpt)
        return
    evaluation(arguments.eval_tokens, arguments.rounds)
    training(arguments.nanogpt, arguments.steps)


if __name__ == "__main__":
    main()
