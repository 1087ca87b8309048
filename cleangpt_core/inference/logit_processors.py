"""Logit processors: changes to the next-token logits made before any sampler draws, so they compose with
every registered sampler, built-in or a plugin's.

They are OpenAI's request parameters: `logit_bias` adds a fixed amount to chosen tokens; the presence and
frequency penalties lower the logits of tokens already generated, as OpenAI defines them:
``logits[j] - count[j] * frequency_penalty - (count[j] > 0) * presence_penalty``, where `count` counts the
tokens generated so far (not the prompt's, as OpenAI and vLLM do).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

LogitProcessor = Callable[[torch.Tensor], torch.Tensor]


class Penalties:
    """Presence and frequency penalties over the tokens generated so far; `observe` each new token."""

    def __init__(self, vocab_size: int, *, presence: float, frequency: float, device: torch.device) -> None:
        self.presence = presence
        self.frequency = frequency
        self.counts = torch.zeros(vocab_size, device=device)

    def observe(self, token_id: int) -> None:
        self.counts[token_id] += 1

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        seen = (self.counts > 0).to(logits.dtype)
        return logits - self.counts.to(logits.dtype) * self.frequency - seen * self.presence


def logit_bias(bias: Mapping[int, float], vocab_size: int, device: torch.device) -> LogitProcessor:
    """A processor adding `bias[token]` to each listed token's logit (OpenAI's -100 bans it, 100 forces it)."""
    dense = torch.zeros(vocab_size, device=device)
    for token, amount in bias.items():
        dense[token] = amount
    return lambda logits: logits + dense.to(logits.dtype)


def with_processors(
    sampler: Callable[..., torch.Tensor], processors: Sequence[LogitProcessor]
) -> Callable[..., torch.Tensor]:
    """`sampler` (``fn(logits, generator=None) -> ids``) drawing from the logits the `processors` made, in order."""
    if not processors:
        return sampler

    def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for process in processors:
            logits = process(logits)
        return sampler(logits, generator=generator)

    return sample
