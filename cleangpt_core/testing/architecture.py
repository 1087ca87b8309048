"""The architecture contract as reusable checks: one line in a plugin's test suite runs them all.

    from cleangpt_core.testing.architecture import check_architecture_contract, registered_model_factory

    def test_my_architecture_keeps_the_contract():
        check_architecture_contract(registered_model_factory("MyTransformer"))

A model factory is a function of no arguments returning a fresh, small model (it is called under
`torch.manual_seed`). Each check raises `AssertionError` stating the contract and what the model did. Before
checking, parameters get seeded random noise: zero-initialised weights (SASP's queries) or GPT-2's tiny
initialisation would make attention nearly uniform and hide masking and caching bugs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cleangpt_core.model.base import takes_final_label
from cleangpt_core.model.factory import get_model
from cleangpt_core.model.serialization import load_model, save_model

ModelFactory = Callable[[], nn.Module]

SMALL_MODEL = {"vocab_size": 53, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
ATOL = 1e-5
RTOL = 1e-5


def registered_model_factory(model_type: str, **overrides: Any) -> ModelFactory:
    """A factory building a small model of a registered architecture (overrides change the shape or options)."""
    options = {**SMALL_MODEL, **overrides}
    return lambda: get_model(model_type, **options)


def perturb_parameters(model: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Add seeded Gaussian noise to every parameter, so attention is far from uniform; returns the model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            parameter.add_(noise.to(parameter.device, parameter.dtype) * scale)
    return model


def _tokens(model: nn.Module, batch: int, length: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (batch, length), generator=generator)


def _logits(model: nn.Module, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids, **kwargs)["logits"]


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, contract: str, atol: float = ATOL) -> None:
    if actual.shape != expected.shape:
        raise AssertionError(f"{contract}: shapes differ, {tuple(actual.shape)} vs {tuple(expected.shape)}")
    difference = (actual - expected).abs()
    allowed = atol + RTOL * expected.abs()
    if not bool((difference <= allowed).all()):
        raise AssertionError(f"{contract}: largest difference {difference.max().item():.3g} (allowed {atol:g})")


def check_forward_contract(model: nn.Module) -> None:
    """forward returns logits (B, T, vocab) and, with labels, the mean loss of predicting labels[t+1] at t."""
    tokens = _tokens(model, 2, model.config.block_size, seed=1)
    labels = tokens.clone()
    labels[0, 3] = -100
    with torch.no_grad():
        output = model(tokens, labels=labels)
    if not isinstance(output, dict) or "logits" not in output or "loss" not in output:
        raise AssertionError("forward(input_ids, labels=...) must return a dict with 'logits' and 'loss'")
    logits = output["logits"]
    expected_shape = (*tokens.shape, model.config.vocab_size)
    if tuple(logits.shape) != expected_shape:
        raise AssertionError(f"logits must have shape (B, T, vocab) = {expected_shape}, got {tuple(logits.shape)}")
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    _assert_close(
        output["loss"].reshape(()),
        expected,
        "loss must be the mean cross-entropy of logits[:, t] against labels[:, t+1], ignoring -100",
    )
    if takes_final_label(model):
        final = _tokens(model, 2, 1, seed=2)
        with torch.no_grad():
            loss = model(tokens, labels=torch.cat([labels, final], dim=1))["loss"]
        expected = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), torch.cat([labels[:, 1:], final], dim=1).reshape(-1)
        )
        _assert_close(
            loss.reshape(()),
            expected,
            "with accepts_final_label, labels one longer than the input must give the last position a target",
        )


def check_causality(model: nn.Module) -> None:
    """Changing a later token never changes the logits of earlier positions."""
    tokens = _tokens(model, 2, model.config.block_size, seed=2)
    changed_at = model.config.block_size // 2
    altered = tokens.clone()
    altered[:, changed_at:] = (altered[:, changed_at:] + 1) % model.config.vocab_size
    _assert_close(
        _logits(model, altered)[:, :changed_at],
        _logits(model, tokens)[:, :changed_at],
        f"causality: changing tokens from position {changed_at} on must not change the logits before it",
    )


def check_padding_invariance(model: nn.Module) -> None:
    """A left-padded row with its attention mask gets the logits of the same row without padding."""
    length = model.config.block_size
    tokens = _tokens(model, 3, length, seed=3)
    pads = [0, 3, length - 2]
    batch = tokens.clone()
    mask = torch.ones_like(tokens)
    for row, pad in enumerate(pads):
        batch[row, :pad] = 0
        mask[row, :pad] = 0
    padded = _logits(model, batch, attention_mask=mask)
    for row, pad in enumerate(pads):
        alone = _logits(model, tokens[row : row + 1, pad:])
        _assert_close(
            padded[row : row + 1, pad:],
            alone,
            f"padding: row {row} with {pad} left pads and attention_mask must give its unpadded logits",
        )


def check_cached_decoding(model: nn.Module) -> None:
    """Prefill plus cached steps (one token, then a chunk) give the logits of full recomputation.

    Skipped for a model without `allocate_kv_cache` (it decodes by recomputation, which is exact anyway).
    """
    if not hasattr(model, "allocate_kv_cache"):
        return
    length = model.config.block_size
    tokens = _tokens(model, 2, length, seed=4)
    full = _logits(model, tokens)
    cache = model.allocate_kv_cache(2, length)
    prefill = length // 2
    pieces = [(0, prefill), *((t, t + 1) for t in range(prefill, length - 3)), (length - 3, length)]
    for start, end in pieces:
        step = _logits(model, tokens[:, start:end], kv_cache=cache)
        _assert_close(
            step,
            full[:, start:end],
            f"KV cache: decoding positions {start}..{end - 1} after {start} cached ones must equal recomputation",
        )

    # The same with a left-padded batch: each row must match its own unpadded recomputation.
    pads = [0, 4]
    batch = tokens.clone()
    mask = torch.ones_like(tokens)
    for row, pad in enumerate(pads):
        batch[row, :pad] = 0
        mask[row, :pad] = 0
    cache = model.allocate_kv_cache(2, length)
    padded_steps = [_logits(model, batch[:, :prefill], attention_mask=mask[:, :prefill], kv_cache=cache)]
    padded_steps += [_logits(model, batch[:, t : t + 1], kv_cache=cache) for t in range(prefill, length)]
    padded = torch.cat(padded_steps, dim=1)
    for row, pad in enumerate(pads):
        _assert_close(
            padded[row : row + 1, pad:],
            _logits(model, tokens[row : row + 1, pad:]),
            f"KV cache with left padding: row {row} ({pad} pads) must equal its unpadded recomputation",
        )


def check_generation_matches_recomputation(model: nn.Module) -> None:
    """Greedy `generate` (cached, sliding past block_size, batched with padding) picks the tokens that
    greedy decoding by full recomputation on the cropped window picks."""
    block_size = model.config.block_size
    prompt = _tokens(model, 2, block_size - 3, seed=5)
    new_tokens = 8  # runs 5 tokens past the context
    expected = prompt.clone()
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = model(expected[:, -block_size:])["logits"][:, -1, :]
            expected = torch.cat([expected, logits.argmax(dim=-1, keepdim=True)], dim=1)
    generated = model.generate(prompt, new_tokens, temperature=0.0)
    if not torch.equal(generated, expected):
        raise AssertionError(
            "generate: greedy tokens with the cache (and the sliding window past block_size) must equal greedy "
            f"decoding by recomputation; got {generated.tolist()}, expected {expected.tolist()}"
        )
    short = prompt[1:, 5:]
    batch = prompt.clone()
    batch[1, :5] = 0
    mask = torch.ones_like(batch)
    mask[1, :5] = 0
    together = model.generate(batch, new_tokens, temperature=0.0, attention_mask=mask)
    alone = model.generate(short, new_tokens, temperature=0.0)
    if not torch.equal(together[1:, 5:], alone):
        raise AssertionError(
            "generate with left padding: a padded row must get the tokens it gets alone; "
            f"got {together[1:, 5:].tolist()}, alone {alone.tolist()}"
        )


def check_save_load_round_trip(model: nn.Module) -> None:
    """save_model then load_model (safetensors + config.json) restores the config and the exact logits."""
    tokens = _tokens(model, 2, model.config.block_size, seed=6)
    with tempfile.TemporaryDirectory() as directory:
        save_model(model, directory)
        restored = load_model(directory).eval()
    if restored.config.model_dump() != model.config.model_dump():
        raise AssertionError(
            f"save/load must restore the config: saved {model.config.model_dump()}, got {restored.config.model_dump()}"
        )
    _assert_close(_logits(restored, tokens), _logits(model, tokens), "save/load must restore the logits", atol=0.0)


def check_seeded_determinism(model_factory: ModelFactory, seed: int = 0) -> None:
    """The same seed builds the same weights, which give the same logits."""
    torch.manual_seed(seed)
    first = model_factory().eval()
    torch.manual_seed(seed)
    second = model_factory().eval()
    first_state, second_state = first.state_dict(), second.state_dict()
    if first_state.keys() != second_state.keys():
        raise AssertionError("seeded determinism: two models built under one seed have different parameter names")
    for name, tensor in first_state.items():
        if not torch.equal(tensor, second_state[name]):
            raise AssertionError(f"seeded determinism: {name} differs between two models built under seed {seed}")
    tokens = _tokens(first, 2, first.config.block_size, seed=7)
    _assert_close(_logits(first, tokens), _logits(second, tokens), "seeded determinism: logits", atol=0.0)


def check_rejects_long_sequences(model: nn.Module) -> None:
    """A sequence longer than block_size is rejected by forward with a ValueError naming both lengths."""
    block_size = model.config.block_size
    too_long = _tokens(model, 1, block_size + 1, seed=8)
    try:
        _logits(model, too_long)
    except ValueError as error:
        message = str(error)
        if str(block_size) not in message or str(block_size + 1) not in message:
            raise AssertionError(
                f"the error for a too long sequence must name its length {block_size + 1} and block_size "
                f"{block_size}; got: {message}"
            ) from None
        return
    except Exception as error:
        raise AssertionError(
            f"forward must reject a sequence longer than block_size={block_size} with a ValueError naming both "
            f"lengths; it raised {type(error).__name__}: {error}"
        ) from error
    raise AssertionError(f"forward must reject a sequence of {block_size + 1} tokens when block_size={block_size}")


def check_architecture_contract(model_factory: ModelFactory, seed: int = 0) -> None:
    """Run every check of the architecture contract on models built by `model_factory`."""
    check_seeded_determinism(model_factory, seed)
    torch.manual_seed(seed)
    model = perturb_parameters(model_factory(), seed=seed).eval()
    check_forward_contract(model)
    check_causality(model)
    check_padding_invariance(model)
    check_cached_decoding(model)
    check_generation_matches_recomputation(model)
    check_save_load_round_trip(model)
    check_rejects_long_sequences(model)
