"""Next-token samplers: logits (B, V) in, next-token ids (B, 1) out.

Every sampler works on the whole batch with tensor operations (no Python loop over rows or the
vocabulary) and takes an optional `torch.Generator` for reproducible draws. The order of operations is
Hugging Face's: divide by the temperature, then filter (top-k, then top-p, then min-p), then draw.
A temperature or top-p below `GREEDY_BELOW` (0 included) means greedy: dividing by a temperature of 1e-300
overflows the logits to inf, and a top-p of 1e-300 rounds to 0 in float32 and filters out every token, so
either would draw from NaNs; the limit of both as they shrink is the argmax. Each registered function checks
its parameters against its schema in `cleangpt_core.config.sampling` and hands them to `sample_next_token`,
the one implementation of the filters; generation calls these functions as it calls a plugin's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cleangpt_core.config.base import validate_config
from cleangpt_core.config.sampling import (
    CombinedConfig,
    MinPConfig,
    TemperatureConfig,
    TopKConfig,
    TopPConfig,
)
from cleangpt_core.registry import load_component

SamplingFn = Callable[..., torch.Tensor]
GREEDY_BELOW = 1e-5  # a temperature or top-p under this is greedy decoding: see the module's docstring


def _check_logits(logits: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (batch, vocab), got {tuple(logits.shape)}")


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit outside the k largest of its row to -inf (exactly k survive, ties broken by index)."""
    if k >= logits.size(-1):
        return logits
    values, indices = torch.topk(logits, k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, indices, values)


def keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches p; -inf elsewhere."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    drop_sorted = mass_before >= p  # the set already reached p before this token; the top token always stays
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def keep_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p times that of the most likely token."""
    probs = torch.softmax(logits.float(), dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(probs < threshold, float("-inf"))


def sample_next_token(
    logits: torch.Tensor, params: CombinedConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw next-token ids (B, 1) with already validated parameters: the hot path of generation loops."""
    if params.temperature < GREEDY_BELOW or (params.top_p is not None and params.top_p < GREEDY_BELOW):
        return logits.argmax(dim=-1, keepdim=True)
    scaled = logits.float() / params.temperature
    if params.top_k is not None:
        scaled = keep_top_k(scaled, params.top_k)
    if params.top_p is not None:
        scaled = keep_top_p(scaled, params.top_p)
    if params.min_p is not None:
        scaled = keep_min_p(scaled, params.min_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def greedy_sampling(logits: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The most likely token of each row (`generator` is accepted for a uniform signature)."""
    _check_logits(logits)
    return logits.argmax(dim=-1, keepdim=True)


def temperature_sampling(
    logits: torch.Tensor, temperature: float = 1.0, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sample from softmax(logits / temperature)."""
    _check_logits(logits)
    params = validate_config(TemperatureConfig, {"temperature": temperature}, "temperature sampler")
    return sample_next_token(logits, CombinedConfig(temperature=params.temperature), generator)


def top_k_sampling(
    logits: torch.Tensor, k: int = 50, temperature: float = 1.0, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sample among the k most likely tokens."""
    _check_logits(logits)
    params = validate_config(TopKConfig, {"k": k, "temperature": temperature}, "top_k sampler")
    return sample_next_token(logits, CombinedConfig(temperature=params.temperature, top_k=params.k), generator)


def top_p_sampling(
    logits: torch.Tensor, p: float = 0.9, temperature: float = 1.0, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Nucleus sampling: sample among the smallest set of tokens whose probability reaches p."""
    _check_logits(logits)
    params = validate_config(TopPConfig, {"p": p, "temperature": temperature}, "top_p sampler")
    return sample_next_token(logits, CombinedConfig(temperature=params.temperature, top_p=params.p), generator)


def min_p_sampling(
    logits: torch.Tensor, min_p: float = 0.05, temperature: float = 1.0, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sample among tokens at least min_p times as likely as the most likely one."""
    _check_logits(logits)
    params = validate_config(MinPConfig, {"min_p": min_p, "temperature": temperature}, "min_p sampler")
    return sample_next_token(logits, CombinedConfig(temperature=params.temperature, min_p=params.min_p), generator)


def combined_sampling(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p, then min-p; each filter left at None is off."""
    _check_logits(logits)
    params = validate_config(
        CombinedConfig,
        {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p},
        "combined sampler",
    )
    return sample_next_token(logits, params, generator)


def get_sampling_fn(name: str) -> SamplingFn:
    """The sampling function registered under `name` (built-in or from a plugin)."""
    return load_component("sampler", name)
