"""muP's coordinate check (Yang et al. 2022, "Tensor Programs V", section 7 and figure 5): the size of each
part's output over the first training steps, at several widths.

Under a parametrization that transfers, the typical size of a coordinate (its RMS) after a few steps stays the
same as the model widens; under the standard parametrization with Adam it grows with width, the sign that the
best learning rate will shift. The parts are found by name with `capture`, so any decoder-based architecture
can be checked; each width trains on the same batch from the same seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cleangpt_core.inspection.capture import capture, name_matches

# The parts whose outputs are measured, by `capture` name; a glob's matches (one per block) are averaged.
COORDINATE_PARTS: dict[str, str] = {
    "embedding": "wte",
    "attention": "h.*.attn",
    "mlp": "h.*.mlp",
    "logits": "lm_head",
}


@dataclass
class CoordinateCheck:
    """The RMS of each part's output, by part, width and step (step 0: at initialisation)."""

    widths: list[int]
    rms: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    def spread(self, part: str, step: int = -1) -> float:
        """How many times larger the part's RMS is at its largest than at its smallest across the widths."""
        values = [self.rms[part][width][step] for width in self.widths]
        return max(values) / min(values)

    def growth(self, part: str, step: int = -1) -> float:
        """The part's RMS at the widest width over that at the narrowest (> 1: it grows with width)."""
        return self.rms[part][self.widths[-1]][step] / self.rms[part][self.widths[0]][step]


def _rms(value: torch.Tensor) -> float:
    return value.float().pow(2).mean().sqrt().item()


def coordinate_check(
    build_model: Callable[[int], nn.Module],
    build_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    widths: Sequence[int],
    *,
    steps: int = 4,
    batch_size: int = 8,
    length: int = 16,
    seed: int = 0,
    parts: Mapping[str, str] = COORDINATE_PARTS,
) -> CoordinateCheck:
    """Train a model of each width for `steps` steps on one fixed batch of random tokens and record the RMS of
    each part's output before every step and after the last.

    `build_model(width)` makes the model (seeded here before each call); `build_optimizer(model)` its optimizer.
    """
    result = CoordinateCheck(widths=list(widths), rms={part: {} for part in parts})
    for width in widths:
        torch.manual_seed(seed)
        model = build_model(width)
        optimizer = build_optimizer(model)
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, model.config.vocab_size, (batch_size, length + 1), generator=generator)
        for part in parts:
            result.rms[part][width] = []
        model.train()
        for step in range(steps + 1):
            with capture(model, list(parts.values())) as seen:
                loss = model(tokens[:, :-1], labels=tokens)["loss"]
            for part, pattern in parts.items():
                result.rms[part][width].append(_mean(_rms(value) for name, value in _matching(seen.outputs, pattern)))
            if step < steps:
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
    return result


def _matching(outputs: Mapping[str, Any], pattern: str) -> Iterable[tuple[str, torch.Tensor]]:
    return ((name, value) for name, value in outputs.items() if name_matches(pattern, name))


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)
