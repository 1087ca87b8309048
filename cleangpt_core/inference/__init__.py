"""Inference: next-token samplers and text generation."""

from cleangpt_core.inference.sampling_strategies import combined_sampling, get_sampling_fn

__all__ = ["combined_sampling", "get_sampling_fn"]
