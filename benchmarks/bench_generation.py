"""Generation speed: the presets' cached `generate` against transformers' `generate` (cache on).

1. Vanilla against GPT2LMHeadModel, 2. Llama against LlamaForCausalLM: same weights, same shape (4 layers,
width 128, GPT-2 vocabulary), prompt of 16 tokens, 200 new tokens, greedy, batch 1 and 8; nanoGPT-style full
recomputation is timed as a second reference. Prints new tokens per second and the ratio to transformers,
and checks that both produce the same tokens.

    python benchmarks/bench_generation.py
"""

from __future__ import annotations

import torch
from measure import gpt2_twins, hf_generate, interleaved_medians, llama_twins

PROMPT_LENGTH = 16
NEW_TOKENS = 200
BATCH_SIZES = (1, 8)
REPEATS = 3  # timed rounds per contender, after a warm-up round
SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "context": 256, "vocab_size": 50257}


@torch.inference_mode()
def recompute_generate(model, prompt: torch.Tensor) -> torch.Tensor:
    """nanoGPT's generate: the whole context through the model for every new token (last logits only)."""
    ids = prompt
    for _ in range(NEW_TOKENS):
        logits = model(ids[:, -model.config.block_size :], logits_to_keep=1)["logits"][:, -1, :]
        ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return ids


def race(title: str, hf_model: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Time transformers' cached generate, ours and recomputation at each batch size, and print the table."""
    hf_model, ours = hf_model.eval(), ours.eval()
    print(title)
    print(f"{'batch':>5} {'transformers tok/s':>19} {'cleanGPT tok/s':>15} {'ratio':>6} {'recompute tok/s':>16}")
    for batch in BATCH_SIZES:
        generator = torch.Generator().manual_seed(batch)
        prompt = torch.randint(0, SHAPE["vocab_size"], (batch, PROMPT_LENGTH), generator=generator)

        def run_hf(prompt=prompt):
            return hf_generate(hf_model, prompt, NEW_TOKENS)

        def run_ours(prompt=prompt):
            return ours.generate(prompt, NEW_TOKENS, temperature=0.0)

        same = torch.equal(run_hf(), run_ours())
        medians = interleaved_medians(
            {"hf": run_hf, "ours": run_ours, "recompute": lambda prompt=prompt: recompute_generate(ours, prompt)},
            REPEATS,
        )
        new_tokens = batch * NEW_TOKENS
        hf_rate, our_rate, recompute_rate = (new_tokens / medians[name] for name in ("hf", "ours", "recompute"))
        print(
            f"{batch:>5} {hf_rate:>19.0f} {our_rate:>15.0f} {our_rate / hf_rate:>5.2f}x {recompute_rate:>16.0f}"
            f"   same tokens: {same}"
        )


def main() -> None:
    torch.set_num_threads(2)
    shape = f"4 layers, width 128, vocab 50257; prompt {PROMPT_LENGTH}, {NEW_TOKENS} new tokens, greedy"
    race(f"1. Vanilla against GPT2LMHeadModel: {shape}", *gpt2_twins(**SHAPE))
    race(f"2. Llama against LlamaForCausalLM: {shape}", *llama_twins(**SHAPE))


if __name__ == "__main__":
    main()
