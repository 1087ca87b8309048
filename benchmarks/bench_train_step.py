"""Training-step speed (forward + backward + AdamW), measured side by side in one run.

1. The Vanilla preset against transformers' GPT2LMHeadModel, and
2. the Llama preset against transformers' LlamaForCausalLM, each on the same weights and batch at nanoGPT's
   character-level shape (4 layers, 4 heads, width 128, context 64, batch 12, vocabulary 65).
3. SASP against Vanilla at the same width and depth (a character-level vocabulary, so the blocks, where
   the two differ, dominate the cost rather than the output layer).

Steps of the compared models are interleaved, so a change in machine load hits both alike. Prints the
median step time, tokens per second and the ratio.

    python benchmarks/bench_train_step.py
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

WARMUP_STEPS = 2
TIMED_STEPS = 20  # step times on a shared 2-core machine vary; a longer median is steadier


def make_step(model: torch.nn.Module, tokens: torch.Tensor, loss_of: Callable) -> Callable[[], None]:
    """One optimisation step of `model` on `tokens` (the labels are the tokens, shifted inside)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    model.train()

    def step() -> None:
        loss = loss_of(model(tokens, labels=tokens))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def compare(title: str, steps: dict[str, Callable[[], None]], tokens_per_step: int) -> dict[str, float]:
    """Median step time of each contender, measured in interleaved rounds."""
    for _ in range(WARMUP_STEPS):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(TIMED_STEPS):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(title)
    for name, median in medians.items():
        print(f"  {name:<14} {median * 1e3:8.1f} ms/step {tokens_per_step / median:10.0f} tokens/s")
    return medians


# nanoGPT's shakespeare_char shape, scaled to a CPU (its config/train_shakespeare_char.py uses 6 x 384, 256).
CHAR_SHAPE = {"vocab_size": 65, "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}
CHAR_BATCH = 12


def llama_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The Llama preset at the character shape and transformers' LlamaForCausalLM with the same weights."""
    ours = get_model("Llama", **CHAR_SHAPE)
    fields = {key: value for key, value in hf_config_from_llama(ours.config).items() if key != "architectures"}
    theirs = LlamaForCausalLM(LlamaConfig(**fields))
    theirs.load_state_dict(to_hf_llama_state_dict(ours))
    return ours, theirs


def main() -> None:
    torch.set_num_threads(2)
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)

    length = CHAR_SHAPE["block_size"]
    tokens = torch.randint(
        0, CHAR_SHAPE["vocab_size"], (CHAR_BATCH, length), generator=torch.Generator().manual_seed(0)
    )
    hf_config = GPT2Config(
        vocab_size=CHAR_SHAPE["vocab_size"],
        n_positions=length,
        n_embd=CHAR_SHAPE["n_embd"],
        n_layer=CHAR_SHAPE["n_layer"],
        n_head=CHAR_SHAPE["n_head"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf_model = GPT2LMHeadModel(hf_config)
    ours = from_hf_state_dict(hf_model.state_dict(), vanilla_config_from_hf(hf_config.to_dict()))
    shape = "4 layers x 128, 4 heads, vocab 65"
    medians = compare(
        f"1. train step, Vanilla, {shape}, batch {CHAR_BATCH} x {length} tokens",
        {
            "transformers": make_step(hf_model, tokens, lambda out: out.loss),
            "cleanGPT": make_step(ours, tokens, lambda out: out["loss"]),
        },
        CHAR_BATCH * length,
    )
    print(f"  cleanGPT Vanilla is {medians['transformers'] / medians['cleanGPT']:.2f}x the speed of transformers")

    ours, theirs = llama_pair()
    medians = compare(
        f"2. train step, Llama, {shape}, batch {CHAR_BATCH} x {length} tokens",
        {
            "transformers": make_step(theirs, tokens, lambda out: out.loss),
            "cleanGPT": make_step(ours, tokens, lambda out: out["loss"]),
        },
        CHAR_BATCH * length,
    )
    print(f"  cleanGPT Llama is {medians['transformers'] / medians['cleanGPT']:.2f}x the speed of transformers")

    shape = {"vocab_size": 65, "n_layer": 6, "n_head": 6, "n_embd": 192, "block_size": 128}
    batch = 16
    tokens = torch.randint(0, 65, (batch, 128), generator=torch.Generator().manual_seed(1))
    vanilla, sasp = get_model("Vanilla", **shape), get_model("SASP", **shape)
    medians = compare(
        f"3. train step, 6 layers x 192, vocab 65, batch {batch} x 128 tokens "
        f"(params: Vanilla {vanilla.get_num_params():,}, SASP {sasp.get_num_params():,})",
        {
            "Vanilla": make_step(vanilla, tokens, lambda out: out["loss"]),
            "SASP": make_step(sasp, tokens, lambda out: out["loss"]),
        },
        batch * 128,
    )
    print(f"  SASP trains at {medians['Vanilla'] / medians['SASP']:.2f}x the speed of Vanilla")


if __name__ == "__main__":
    main()
