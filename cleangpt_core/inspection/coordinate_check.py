"""muP's coordinate check (Yang et al. 2022, "Tensor Programs V", section 7 and figure 5): the size of each
part's output over the first training steps, at several widths.

Under a parametrization that transfers, the typical size of a coordinate (its RMS) after some steps stays the
same as the model widens; under the standard parametrization with Adam it grows with width, the sign that the
best learning rate will shift. The parts are found by name with `capture`, so any decoder-based architecture
can be checked (a part the model lacks is left out); every width trains on the same batches from the same seed,
and with several seeds the RMS is the mean over them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cleangpt_core.inspection.capture import capture, name_matches, part_names

# The parts whose outputs are measured, by `capture` name; a glob's matches (one per block) are averaged. A `*`
# stands for one dotted part only (`capture`'s globs), so `h.*` is each block's output, not its insides.
COORDINATE_PARTS: dict[str, str] = {
    "embedding": "wte",
    "position": "wpe",  # the stream entering the blocks (tokens plus learned positions; rotary leaves it alone)
    "norm": "h.*.ln_1",
    "qkv": "h.*.attn.c_attn",  # queries, keys and values
    "attention": "h.*.attn",
    "mlp hidden": "h.*.mlp.c_fc",
    "mlp": "h.*.mlp",
    "block": "h.*",
    "final norm": "ln_f",
    "logits": "lm_head",
}

# A batch of token ids (batch, length + 1) for a seed and a step; the model reads [:, :-1] and predicts [:, 1:].
Batches = Callable[[int, int], torch.Tensor]


@dataclass
class CoordinateCheck:
    """The RMS of each part's output, by part, width and step (step 0: at initialisation), as the mean over the
    seeds (`rms`) and per seed (`rms_per_seed[part][width][seed index][step]`)."""

    widths: list[int]
    rms: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    rms_per_seed: dict[str, dict[int, list[list[float]]]] = field(default_factory=dict)

    def spread(self, part: str, step: int = -1) -> float:
        """How many times larger the part's RMS is at its largest than at its smallest across the widths."""
        values = [self.rms[part][width][step] for width in self.widths]
        return max(values) / min(values)

    def growth(self, part: str, step: int = -1) -> float:
        """The part's RMS at the widest width over that at the narrowest (> 1: it grows with width)."""
        return self.rms[part][self.widths[-1]][step] / self.rms[part][self.widths[0]][step]

    def seed_spread(self, part: str, width: int, step: int = -1) -> float:
        """How many times larger the part's RMS is at its largest than at its smallest across the seeds."""
        values = [per_seed[step] for per_seed in self.rms_per_seed[part][width]]
        return max(values) / min(values)


def random_batches(vocab_size: int, batch_size: int, length: int) -> Batches:
    """One fixed batch of uniformly random tokens per seed, the same at every step (the check's original input)."""

    def batch(seed: int, step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(0, vocab_size, (batch_size, length + 1), generator=generator)

    return batch


def coordinate_check(
    build_model: Callable[[int], nn.Module],
    build_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    widths: Sequence[int],
    *,
    steps: int = 4,
    batch_size: int = 8,
    length: int = 16,
    seed: int = 0,
    seeds: int = 1,
    batches: Batches | None = None,
    parts: Mapping[str, str] = COORDINATE_PARTS,
) -> CoordinateCheck:
    """Train a model of each width for `steps` steps and record the RMS of each part's output before every step
    and after the last, for seeds `seed`, `seed + 1`, ... (`seeds` of them).

    `build_model(width)` makes the model (seeded here before each call); `build_optimizer(model)` its optimizer.
    `batches(seed, step)` gives each step's tokens (real text: a fresh batch per step); without it, one batch of
    `batch_size` x `length` random tokens per seed is trained on at every step. The parts in `parts` that the
    first model does not have (a glob matching no name) are left out of the result.
    """
    result = CoordinateCheck(widths=list(widths))
    for width in widths:
        for index in range(seeds):
            run_seed = seed + index
            torch.manual_seed(run_seed)
            model = build_model(width)
            if not result.rms_per_seed:
                names = part_names(model)
                present = {part: glob for part, glob in parts.items() if any(name_matches(glob, n) for n in names)}
                result.rms_per_seed = {part: {} for part in present}
                result.rms = {part: {} for part in present}
            measured = {part: parts[part] for part in result.rms_per_seed}
            trajectory = _train_and_measure(model, build_optimizer(model), measured, steps, run_seed, batches
                                            or random_batches(model.config.vocab_size, batch_size, length))  # fmt: skip
            for part, values in trajectory.items():
                result.rms_per_seed[part].setdefault(width, []).append(values)
        for part in result.rms_per_seed:
            per_seed = result.rms_per_seed[part][width]
            result.rms[part][width] = [statistics.fmean(values) for values in zip(*per_seed, strict=True)]
    return result


def _train_and_measure(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    parts: Mapping[str, str],
    steps: int,
    seed: int,
    batches: Batches,
) -> dict[str, list[float]]:
    """The RMS of each part's output before every step and after the last, by part."""
    trajectory: dict[str, list[float]] = {part: [] for part in parts}
    globs = sorted(set(parts.values()))
    model.train()
    for step in range(steps + 1):
        tokens = batches(seed, step)
        with capture(model, globs) as seen:
            loss = model(tokens[:, :-1], labels=tokens)["loss"]
        for part, glob in parts.items():
            matched = (value for name, value in seen.outputs.items() if name_matches(glob, name))
            trajectory[part].append(_mean(_rms(value) for value in matched))
        if step < steps:
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return trajectory


def _rms(value: Any) -> float:
    if isinstance(value, tuple):  # a position encoding returns (stream, layout): the stream
        value = value[0]
    return value.detach().float().pow(2).mean().sqrt().item()


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)
