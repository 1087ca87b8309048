"""Training-step speed (forward + backward + AdamW), measured side by side in one run.

1. Vanilla against transformers' GPT-2 at the same shape, weights and batch (GPT-2 vocabulary).
2. SASP against Vanilla at the same width and depth (a character-level vocabulary, so the blocks, where
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
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from cleangpt_core.model import get_model
from cleangpt_core.model.hf_interop import from_hf_state_dict, vanilla_config_from_hf

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


def main() -> None:
    torch.set_num_threads(2)
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)

    batch, length = 8, 128
    hf_config = GPT2Config(
        vocab_size=50257,
        n_positions=length,
        n_embd=128,
        n_layer=4,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf_model = GPT2LMHeadModel(hf_config)
    ours = from_hf_state_dict(hf_model.state_dict(), vanilla_config_from_hf(hf_config.to_dict()))
    tokens = torch.randint(0, hf_config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    medians = compare(
        f"1. train step, 4 layers x 128, vocab 50257, batch {batch} x {length} tokens",
        {
            "transformers": make_step(hf_model, tokens, lambda out: out.loss),
            "cleanGPT": make_step(ours, tokens, lambda out: out["loss"]),
        },
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
        {
            "Vanilla": make_step(vanilla, tokens, lambda out: out["loss"]),
            "SASP": make_step(sasp, tokens, lambda out: out["loss"]),
        },
        batch * 128,
    )
    print(f"  SASP trains at {medians['Vanilla'] / medians['SASP']:.2f}x the speed of Vanilla")


if __name__ == "__main__":
    main()
