"""Schemas of the built-in samplers: the single source of their defaults and valid ranges."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cleangpt_core.config.base import StrictModel

Temperature = Annotated[
    float,
    Field(ge=0.0, allow_inf_nan=False, description="divides the logits; below 1e-5 (0 included) means greedy (argmax)"),
]
TopK = Annotated[int, Field(ge=1, description="keep only the k most likely tokens")]
TopP = Annotated[
    float,
    Field(gt=0.0, le=1.0, description="keep the fewest tokens whose probability reaches p; below 1e-5: greedy"),
]
MinP = Annotated[
    float, Field(gt=0.0, le=1.0, description="keep tokens at least min_p times as likely as the most likely")
]


class GreedyConfig(StrictModel):
    """Greedy decoding has no parameters: it always takes the most likely token."""


class TemperatureConfig(StrictModel):
    """Sampling from softmax(logits / temperature)."""

    temperature: Temperature = 1.0


class TopKConfig(TemperatureConfig):
    """Temperature sampling restricted to the k most likely tokens."""

    k: TopK = 50


class TopPConfig(TemperatureConfig):
    """Nucleus sampling: temperature sampling restricted to the top-p probability mass."""

    p: TopP = 0.9


class MinPConfig(TemperatureConfig):
    """Temperature sampling restricted to tokens at least min_p times as likely as the best one."""

    min_p: MinP = 0.05


class CombinedConfig(TemperatureConfig):
    """Temperature, then top-k, then top-p (then min-p); a filter left at None is off."""

    top_k: TopK | None = None
    top_p: TopP | None = None
    min_p: MinP | None = None
