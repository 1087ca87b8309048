"""Training-step speed (forward + backward + fused AdamW), measured side by side in one run.

1. The Vanilla preset against transformers' GPT2LMHeadModel, and
2. the Llama preset against transformers' LlamaForCausalLM, each on the same weights and batch at nanoGPT's
   character-level shape (4 layers, 4 heads, width 128, context 64, batch 12, vocabulary 65), in float32
   and with both under bfloat16 autocast; ours also in float32 with its linear layers on MKL
   (`onednn_linear(False)`), PyTorch's default, to show what oneDNN buys.
3. SASP against Vanilla at the same width and depth (a character-level vocabulary, so the blocks, where
   the two differ, dominate the cost rather than the output layer).

Steps of the compared models are interleaved, so a change in machine load hits both alike. Prints the
median step time, tokens per second and the ratio.

    python benchmarks/bench_train_step.py
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from measure import gpt2_twins, interleaved_medians, llama_twins, training_step

from cleangpt_core.kernels import onednn_linear
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


# nanoGPT's shakespeare_char shape, scaled to a CPU (its config/train_shakespeare_char.py uses 6 x 384, 256).
CHAR_SHAPE = {"vocab_size": 65, "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}
CHAR_BATCH = 12


def against_transformers(preset: str, twins: Callable[..., tuple], tokens: torch.Tensor, number: int) -> None:
    """Our preset against its transformers twin in float32 and under bf16 autocast, all four interleaved."""
    shape = {key: value for key, value in CHAR_SHAPE.items() if key != "block_size"} | {"context": tokens.size(1)}
    (hf_model, ours), (hf_bf16, ours_bf16), (_, ours_mkl) = twins(**shape), twins(**shape), twins(**shape)

    def bf16() -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16)

    title = f"{number}. train step, {preset}, 4 layers x 128, 4 heads, vocab 65, batch {CHAR_BATCH} x {tokens.size(1)}"
    medians = compare(
        title,
        {
            "transformers": training_step(hf_model, tokens),
            "cleanGPT": training_step(ours, tokens),
            "cleanGPT, MKL": training_step(ours_mkl, tokens, context=onednn_linear(False)),
            "transformers bf16": training_step(hf_bf16, tokens, context=bf16()),
            "cleanGPT bf16": training_step(ours_bf16, tokens, context=bf16()),
        },
        tokens.numel(),
    )
    for suffix in ("", ", MKL", " bf16"):
        reference = "transformers bf16" if suffix == " bf16" else "transformers"
        ratio = medians[reference] / medians[f"cleanGPT{suffix}"]
        print(f"  cleanGPT {preset}{suffix} is {ratio:.2f}x the speed of {reference}")


def main() -> None:
    torch.set_num_threads(2)
    tokens = torch.randint(
        0, CHAR_SHAPE["vocab_size"], (CHAR_BATCH, CHAR_SHAPE["block_size"]), generator=torch.Generator().manual_seed(0)
    )
    against_transformers("Vanilla", gpt2_twins, tokens, 1)
    against_transformers("Llama", llama_twins, tokens, 2)

    shape = {"vocab_size": 65, "n_layer": 6, "n_head": 6, "n_embd": 192, "block_size": 128}
    batch = 16
    tokens = torch.randint(0, 65, (batch, 128), generator=torch.Generator().manual_seed(1))
    vanilla, sasp = get_model("Vanilla", **shape), get_model("SASP", **shape)
    medians = compare(
        f"3. train step, 6 layers x 192, vocab 65, batch {batch} x 128 tokens "
        f"(params: Vanilla {vanilla.get_num_params():,}, SASP {sasp.get_num_params():,})",
        {"Vanilla": training_step(vanilla, tokens), "SASP": training_step(sasp, tokens)},
        batch * 128,
    )
    print(f"  SASP trains at {medians['Vanilla'] / medians['SASP']:.2f}x the speed of Vanilla")


if __name__ == "__main__":
    main()
