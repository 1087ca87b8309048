"""What the speed benchmarks share: interleaved timing, the matmul peak, FLOPs per token, and model twins.

A twin is transformers' GPT2LMHeadModel and our Vanilla model with the very same weights, so a comparison
measures the code, not the initialisation. MFU is nanoGPT's: achieved FLOP/s over a peak, the FLOPs of a
token being 6 N (forward and backward through N weights) plus 12 L T d for attention (PaLM, appendix B);
the peak is a square matmul of the same dtype on the same device, timed in the same rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch

from cleangpt_core.huggingface.weights import (
    from_hf_state_dict,
    hf_config_from_llama,
    to_hf_llama_state_dict,
    vanilla_config_from_hf,
)
from cleangpt_core.kernels.cpu_gemm import ONEDNN_AVAILABLE, onednn_product
from cleangpt_core.model import get_model

if TYPE_CHECKING:  # transformers is imported by the twins only, so a run without it can still time our model
    from transformers import GPT2LMHeadModel, LlamaForCausalLM


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (GPU kernels run asynchronously)."""
    return torch.cuda.synchronize if device.type == "cuda" else lambda: None


def interleaved_medians(
    functions: dict[str, Callable[[], object]],
    rounds: int,
    *,
    warmup: int = 1,
    device: torch.device | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds of each function over `rounds`, run in turn so a change of machine load hits all alike.

    `clock` is wall time by default; `time.process_time` (this process's CPU seconds) is steadier on a
    shared machine, and comparable to wall time only with one thread (more threads add their CPU time).
    """
    sync = synchronizer(device or torch.device("cpu"))
    for _ in range(warmup):
        for function in functions.values():
            function()
    sync()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = clock()
            function()
            sync()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def square_matmuls(
    device: torch.device, dtype: torch.dtype, size: int
) -> tuple[dict[str, Callable[[], object]], float]:
    """One square (size x size) matmul by each GEMM library PyTorch has for `dtype` on `device`, and its FLOPs.

    Timed among the contenders, FLOPs / the fastest one's median is the practical peak under the same machine
    load, which MFU is measured against. On a CPU in float32, `a @ b` is MKL's and oneDNN is the other
    library (the one our `Linear` may use there, faster on AMD CPUs with AVX-512); in bf16, and on GPUs,
    `a @ b` is the one.
    """
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    products: dict[str, Callable[[], object]] = {"matmul peak": lambda: a @ b}
    if device.type == "cpu" and dtype == torch.float32 and ONEDNN_AVAILABLE:
        b_rows = b.t()  # linear multiplies by the transpose of its weight
        products["matmul peak (oneDNN)"] = lambda: onednn_product(a, b_rows)
    return products, 2.0 * size**3


def matmul_peak(medians: dict[str, float], flops: float) -> float:
    """Remove the `square_matmuls` entries from `medians` and return the fastest one's FLOP/s."""
    fastest = min(medians.pop(name) for name in [name for name in medians if name.startswith("matmul peak")])
    return flops / fastest


def flops_per_token(model: torch.nn.Module, context: int) -> float:
    """Training FLOPs per token of our model at `context` positions (nanoGPT's estimate_mfu)."""
    config = model.config
    return 6 * model.get_num_params() + 12 * config.n_layer * config.n_embd * context


def gpt2_twins(
    *, n_layer: int, n_head: int, n_embd: int, context: int, vocab_size: int, seed: int = 0
) -> tuple[GPT2LMHeadModel, torch.nn.Module]:
    """transformers' GPT-2 (SDPA attention, no dropout) and our Vanilla model with its weights."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    hf_config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=context,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation="sdpa",
    )
    hf_model = GPT2LMHeadModel(hf_config)
    ours = from_hf_state_dict(hf_model.state_dict(), vanilla_config_from_hf(hf_config.to_dict()))
    return hf_model, ours


def llama_twins(
    *, n_layer: int, n_head: int, n_embd: int, context: int, vocab_size: int, seed: int = 0
) -> tuple[LlamaForCausalLM, torch.nn.Module]:
    """transformers' Llama (SDPA attention) and our Llama preset with the same weights."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    ours = get_model("Llama", vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=context)
    fields = {key: value for key, value in hf_config_from_llama(ours.config).items() if key != "architectures"}
    hf_model = LlamaForCausalLM(LlamaConfig(**fields, attn_implementation="sdpa"))
    hf_model.load_state_dict(to_hf_llama_state_dict(ours))
    return hf_model, ours


def training_step(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    *,
    context: AbstractContextManager[Any] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Callable[[], None]:
    """One optimisation step (forward, backward, fused AdamW) of either twin on `tokens`; `context` (an
    autocast, or `onednn_linear(False)`) is entered around each forward."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    model.train()

    def step() -> None:
        with context or nullcontext():
            loss = model(tokens, labels=tokens)["loss"]  # a transformers ModelOutput is a dict too
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return step


def hf_generate(model: GPT2LMHeadModel | LlamaForCausalLM, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """transformers' cached greedy generation of exactly `new_tokens` tokens (its default dynamic cache)."""
    return model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=0,
    )


def generation_race(
    hf_model: GPT2LMHeadModel | LlamaForCausalLM,
    ours: torch.nn.Module,
    prompt: torch.Tensor,
    new_tokens: int,
    rounds: int,
    *,
    others: dict[str, Callable[[], object]] | None = None,
    device: torch.device | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], bool]:
    """Median seconds of transformers' cached greedy `generate` and ours (`others` too) on the same prompt for
    the same number of new tokens, interleaved; and whether the two produced the same tokens.

    Both decode greedily with their cache, one token per step; the prompt plus `new_tokens` must fit both
    models' context, as each does something different past it.
    """
    contenders = {
        "transformers": lambda: hf_generate(hf_model, prompt, new_tokens),
        "cleanGPT": lambda: ours.generate(prompt, new_tokens, temperature=0.0),
        **(others or {}),
    }
    same = torch.equal(contenders["transformers"](), contenders["cleanGPT"]())
    return interleaved_medians(contenders, rounds, device=device, clock=clock), same
