"""Generation speed: the presets' cached `generate` against transformers' `generate` with its cache.

1. Vanilla against GPT2LMHeadModel, 2. Llama against LlamaForCausalLM, with the same weights, at nanoGPT's
character shape (4 layers, 4 heads, width 128, vocabulary 65), batch 1 and 8: a random prompt of 16 tokens,
200 new tokens, greedy, both with their key/value cache (transformers: `use_cache=True`, its default dynamic
cache). nanoGPT-style recomputation of the whole context at every step is timed as a second reference.
Prints new tokens per second, the ratio to transformers and whether both produced the same tokens.

The context is 256, not nanoGPT's 64, so that the prompt and the 200 new tokens fit it and both sides do the
same work: one cached step per new token. Past the context they would do three different things: GPT-2 in
transformers stops with an IndexError (no position embedding past n_positions), its Llama goes on with
rotary positions it was never trained on and a cache that keeps growing, and cleanGPT slides the window,
re-encoding the last block_size tokens at each step (exactly what recomputation gives, as nanoGPT does).

    flock /tmp/bench.lock python benchmarks/bench_generation.py [--rounds 7] [--threads 2] [--cpu-time]

`--cpu-time --threads 1` times this process's CPU seconds on one thread: on a shared, loaded machine wall
time also measures the neighbours (two threads wait on each other whenever one is descheduled).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from measure import generation_race, gpt2_twins, llama_twins

PROMPT_LENGTH = 16
NEW_TOKENS = 200
BATCH_SIZES = (1, 8)
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "context": 256, "vocab_size": 65}
assert SHAPE["context"] >= PROMPT_LENGTH + NEW_TOKENS, "past the context the contenders compute different things"


@torch.inference_mode()
def recompute_generate(model: torch.nn.Module, prompt: torch.Tensor) -> torch.Tensor:
    """nanoGPT's generate: the whole context through the model for every new token (last logits only)."""
    ids = prompt
    for _ in range(NEW_TOKENS):
        logits = model(ids[:, -model.config.block_size :], logits_to_keep=1)["logits"][:, -1, :]
        ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return ids


def race(title: str, hf_model: torch.nn.Module, ours: torch.nn.Module, rounds: int, clock: Callable[[], float]) -> None:
    """Time transformers' cached generate, ours and recomputation at each batch size, and print the table."""
    hf_model, ours = hf_model.eval(), ours.eval()
    print(title)
    print(f"{'batch':>5} {'transformers tok/s':>19} {'cleanGPT tok/s':>15} {'ratio':>6} {'recompute tok/s':>16}")
    for batch in BATCH_SIZES:
        generator = torch.Generator().manual_seed(batch)
        prompt = torch.randint(0, SHAPE["vocab_size"], (batch, PROMPT_LENGTH), generator=generator)
        recompute = {"recompute": lambda prompt=prompt: recompute_generate(ours, prompt)}
        medians, same = generation_race(hf_model, ours, prompt, NEW_TOKENS, rounds, others=recompute, clock=clock)
        hf_rate, our_rate, recompute_rate = (
            batch * NEW_TOKENS / medians[name] for name in ("transformers", "cleanGPT", "recompute")
        )
        print(
            f"{batch:>5} {hf_rate:>19.0f} {our_rate:>15.0f} {our_rate / hf_rate:>5.2f}x {recompute_rate:>16.0f}"
            f"   same tokens: {same}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per contender, after a warm-up round")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU seconds of this process, not wall time")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    clock = time.process_time if arguments.cpu_time else time.perf_counter
    shape = (
        f"4 layers, 4 heads, width 128, vocab 65, context {SHAPE['context']}; "
        f"prompt {PROMPT_LENGTH}, {NEW_TOKENS} new tokens, greedy; {arguments.threads} thread(s), "
        f"{'CPU' if arguments.cpu_time else 'wall'} time"
    )
    race(f"1. Vanilla against GPT2LMHeadModel: {shape}", *gpt2_twins(**SHAPE), arguments.rounds, clock)
    race(f"2. Llama against LlamaForCausalLM: {shape}", *llama_twins(**SHAPE), arguments.rounds, clock)


if __name__ == "__main__":
    main()
