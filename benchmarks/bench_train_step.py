"""Training-step speed (forward + backward + fused AdamW), measured side by side in one run.

1. Vanilla against transformers' GPT-2 at the same shape, weights and batch (GPT-2 vocabulary).
2. SASP against Vanilla at the same width and depth (a character-level vocabulary, so the blocks, where
   the two differ, dominate the cost rather than the output layer).

Steps of the compared models are interleaved, so a change in machine load hits both alike. Prints the
median step time, tokens per second and the ratio.

    python benchmarks/bench_train_step.py
"""

from __future__ import annotations

import torch
from measure import gpt2_twins, interleaved_medians, training_step

from cleangpt_core.model import get_model

WARMUP_STEPS = 2
TIMED_STEPS = 20  # step times on a shared 2-core machine vary; a longer median is steadier


def compare(title: str, steps: dict, tokens_per_step: int) -> dict[str, float]:
    """Median step time of each contender, measured in interleaved rounds, printed with tokens/s."""
    medians = interleaved_medians(steps, TIMED_STEPS, warmup=WARMUP_STEPS)
    print(title)
    for name, median in medians.items():
        print(f"  {name:<14} {median * 1e3:8.1f} ms/step {tokens_per_step / median:10.0f} tokens/s")
    return medians


def main() -> None:
    torch.set_num_threads(2)
    batch, length = 8, 128
    hf_model, ours = gpt2_twins(n_layer=4, n_head=4, n_embd=128, context=length, vocab_size=50257)
    tokens = torch.randint(0, 50257, (batch, length), generator=torch.Generator().manual_seed(0))
    medians = compare(
        f"1. train step, 4 layers x 128, vocab 50257, batch {batch} x {length} tokens",
        {"transformers": training_step(hf_model, tokens), "cleanGPT": training_step(ours, tokens)},
        batch * length,
    )
    print(f"  cleanGPT Vanilla is {medians['transformers'] / medians['cleanGPT']:.2f}x the speed of transformers")

    shape = {"vocab_size": 65, "n_layer": 6, "n_head": 6, "n_embd": 192, "block_size": 128}
    batch = 16
    tokens = torch.randint(0, 65, (batch, 128), generator=torch.Generator().manual_seed(1))
    vanilla, sasp = get_model("Vanilla", **shape), get_model("SASP", **shape)
    medians = compare(
        f"2. train step, 6 layers x 192, vocab 65, batch {batch} x 128 tokens "
        f"(params: Vanilla {vanilla.get_num_params():,}, SASP {sasp.get_num_params():,})",
        {"Vanilla": training_step(vanilla, tokens), "SASP": training_step(sasp, tokens)},
        batch * 128,
    )
    print(f"  SASP trains at {medians['Vanilla'] / medians['SASP']:.2f}x the speed of Vanilla")


if __name__ == "__main__":
    main()
