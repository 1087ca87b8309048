"""Generation speed: the cached `generate` of the Vanilla and Llama presets against transformers' `generate`
(cache on) of GPT2LMHeadModel and LlamaForCausalLM.

Same weights, same shape (4 layers, 4 heads, width 128, GPT-2 vocabulary), prompt of 16 tokens, 200 new
tokens, greedy, batch 1 and 8; nanoGPT-style full recomputation is timed as a second reference. Prints new
tokens per second and the ratio to transformers, and checks that both produce the same tokens.

    python benchmarks/bench_generation.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from cleangpt_core.model import get_model
from cleangpt_core.model.hf_interop import (
    from_hf_state_dict,
    hf_config_from_llama,
    to_hf_llama_state_dict,
    vanilla_config_from_hf,
)

PROMPT_LENGTH = 16
NEW_TOKENS = 200
BATCH_SIZES = (1, 8)
REPEATS = 3  # timed rounds per contender


def timed_interleaved(functions: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median wall time of each function over REPEATS rounds, after a warm-up round.

    Rounds alternate between the contenders, so a change in machine load hits all of them alike.
    """
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(REPEATS):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


@torch.inference_mode()
def recompute_generate(model, prompt: torch.Tensor) -> torch.Tensor:
    """nanoGPT's generate: the whole context through the model for every new token (last logits only)."""
    ids = prompt
    for _ in range(NEW_TOKENS):
        logits = model(ids[:, -model.config.block_size :], logits_to_keep=1)["logits"][:, -1, :]
        ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return ids


def race(title: str, hf_model: torch.nn.Module, ours: torch.nn.Module, vocab_size: int) -> None:
    """Time transformers' cached generate, ours and recomputation at each batch size, and print the table."""
    print(title)
    print(f"{'batch':>5} {'transformers tok/s':>19} {'cleanGPT tok/s':>15} {'ratio':>6} {'recompute tok/s':>16}")
    for batch in BATCH_SIZES:
        prompt = torch.randint(0, vocab_size, (batch, PROMPT_LENGTH), generator=torch.Generator().manual_seed(batch))
        mask = torch.ones_like(prompt)

        def run_hf(prompt=prompt, mask=mask):
            return hf_model.generate(
                prompt,
                attention_mask=mask,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )

        def run_ours(prompt=prompt):
            return ours.generate(prompt, NEW_TOKENS, temperature=0.0)

        same = torch.equal(run_hf(), run_ours())
        medians = timed_interleaved(
            {"hf": run_hf, "ours": run_ours, "recompute": lambda prompt=prompt: recompute_generate(ours, prompt)}
        )
        new_tokens = batch * NEW_TOKENS
        hf_rate, our_rate, recompute_rate = (new_tokens / medians[name] for name in ("hf", "ours", "recompute"))
        print(
            f"{batch:>5} {hf_rate:>19.0f} {our_rate:>15.0f} {our_rate / hf_rate:>5.2f}x {recompute_rate:>16.0f}"
            f"   same tokens: {same}"
        )


def main() -> None:
    torch.set_num_threads(2)
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    vocab_size = 50257
    hf_config = GPT2Config(
        vocab_size=vocab_size, n_positions=256, n_embd=128, n_layer=4, n_head=4, bos_token_id=None, eos_token_id=None
    )
    hf_model = GPT2LMHeadModel(hf_config).eval()
    ours = from_hf_state_dict(hf_model.state_dict(), vanilla_config_from_hf(hf_config.to_dict())).eval()
    shape = f"4 layers, width 128, vocab {vocab_size}; prompt {PROMPT_LENGTH}, {NEW_TOKENS} new tokens, greedy"
    race(f"1. Vanilla against GPT2LMHeadModel: {shape}", hf_model, ours, vocab_size)

    ours = get_model("Llama", vocab_size=vocab_size, n_layer=4, n_head=4, n_embd=128, block_size=256).eval()
    fields = {key: value for key, value in hf_config_from_llama(ours.config).items() if key != "architectures"}
    hf_model = LlamaForCausalLM(LlamaConfig(**fields)).eval()
    hf_model.load_state_dict(to_hf_llama_state_dict(ours))
    race(f"2. Llama against LlamaForCausalLM: {shape}", hf_model, ours, vocab_size)


if __name__ == "__main__":
    main()
