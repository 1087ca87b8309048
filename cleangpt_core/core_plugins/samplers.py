"""Registers the built-in samplers."""

from cleangpt_core.config import sampling
from cleangpt_core.plugin_api import PLUGIN_API_VERSION, Component, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION

_MODULE = "cleangpt_core.inference.sampling_strategies"


@hookimpl
def cleangpt_register_samplers() -> list[Component]:
    """The greedy, temperature, top-k, top-p, min-p and combined samplers."""
    specs = [
        ("greedy", "the most likely token (argmax)", "greedy_sampling", sampling.GreedyConfig, ()),
        ("temperature", "sample from softmax(logits / T)", "temperature_sampling", sampling.TemperatureConfig, ()),
        ("top_k", "sample among the k most likely tokens", "top_k_sampling", sampling.TopKConfig, ()),
        (
            "top_p",
            "nucleus sampling over the top-p probability mass",
            "top_p_sampling",
            sampling.TopPConfig,
            ("nucleus",),
        ),
        (
            "min_p",
            "sample among tokens >= min_p x the best one's probability",
            "min_p_sampling",
            sampling.MinPConfig,
            (),
        ),
        (
            "combined",
            "temperature + top-k + top-p (+ min-p) in one sampler",
            "combined_sampling",
            sampling.CombinedConfig,
            (),
        ),
    ]
    return [
        Component(
            name=name,
            kind="sampler",
            summary=summary,
            target=f"{_MODULE}:{function}",
            config_schema=schema,
            aliases=aliases,
        )
        for name, summary, function, schema, aliases in specs
    ]
