"""The decoding engine behind every `generate`: prefill, then one cached step per new token.

It works with any model that follows the model contract. A model that offers `allocate_kv_cache` and a
`kv_cache` argument to `forward` (both built-in architectures do) decodes incrementally; any other model
is run on the whole (cropped) context at every step, which gives the same tokens, only slower.

The context never exceeds block_size: prompts are cropped from the left, and once generation runs past
the context the window slides. With learned positions every token's position changes when the window
moves, so each step past the context re-prefills the cropped window: exactly what recomputing on it gives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cleangpt_core.config.base import validate_config
from cleangpt_core.errors import ConfigError, GenerationError
from cleangpt_core.registry import get_component

NextTokenFn = Callable[[torch.Tensor], torch.Tensor]
SamplerLike = str | Callable[..., torch.Tensor] | None

DEFAULT_SAMPLER = "combined"  # temperature, top-k, top-p and min-p together; a filter left unset is off
# The sampling options `generate` and the CLI offer, and the schema fields that may take each one (a
# sampler's schema names its nucleus mass `p` or `top_p`, as it likes).
OPTION_FIELDS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "top_k": ("top_k", "k"),
    "top_p": ("top_p", "p"),
    "min_p": ("min_p",),
}


def bind_sampler(
    name: str, options: Mapping[str, Any], *, spell: Callable[[str], str] = str
) -> Callable[..., torch.Tensor]:
    """The registered sampler `name` with `options` bound: ``fn(logits, generator=None) -> ids (B, 1)``.

    Built-in and third-party samplers go the same way: each option of `OPTION_FIELDS` that is not None is
    matched to a field of the sampler's schema and the fields are validated now, before any token is drawn;
    an option the sampler does not take is an error naming those it does (`spell` writes an option as the
    caller's user typed it, e.g. ``--top-k``). Options left at None keep the schema's defaults.
    """
    component = get_component("sampler", name)
    schema = component.config_schema
    fields = schema.model_fields if schema is not None else {}
    takes = [option for option, names in OPTION_FIELDS.items() if any(field in fields for field in names)]
    given: dict[str, Any] = {}
    for option, value in options.items():
        if value is None:
            continue
        field = next((field for field in OPTION_FIELDS[option] if field in fields), None)
        if field is None:
            accepted = ", ".join(map(spell, takes)) if takes else "no options"
            raise ConfigError(
                f"sampler {component.name!r} does not take {spell(option)}; {component.name} takes {accepted}"
            )
        given[field] = value
    values = validate_config(schema, given, f"sampler {component.name!r}").model_dump() if schema is not None else {}
    return functools.partial(component.load(), **values)


def resolve_sampler(
    sampler: SamplerLike,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> NextTokenFn:
    """Turn a sampler choice into `logits (B, V) -> ids (B, 1)`, validating its parameters once.

    `sampler` is None (`DEFAULT_SAMPLER`), a registered sampler's name, bound by `bind_sampler` to the
    parameters given (None: the sampler's default), or a function called as ``fn(logits, generator=generator)``.
    """
    if callable(sampler):
        function = sampler
    else:
        options = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        function = bind_sampler(sampler or DEFAULT_SAMPLER, options)
    return lambda logits: function(logits, generator=generator)


def _last_logits(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor | None, kv_cache: Any | None
) -> torch.Tensor:
    if kv_cache is not None:
        return model(ids, attention_mask=mask, kv_cache=kv_cache, logits_to_keep=1)["logits"][:, -1, :]
    return model(ids, attention_mask=mask)["logits"][:, -1, :]


@torch.inference_mode()
def generate_tokens(
    model: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    attention_mask: torch.Tensor | None = None,
    sampler: SamplerLike = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    on_tokens: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Generate up to `max_new_tokens` tokens after each row of `idx` (B, T) and return (B, T' + n).

    - `attention_mask` (B, T): 1 for real tokens, 0 for left padding; the batch decodes as one.
    - `eos_token_id`: a row that produced it is finished and continues with `pad_token_id` (default: the
      EOS id); generation stops early once every row is finished.
    - `on_tokens(ids)` is called with each step's new tokens (B, 1), for streaming.
    - The prompt is cropped from the left to block_size, so T' = min(T, block_size).

    The model runs in eval mode (no dropout) and is put back in its previous mode afterwards.
    """
    if idx.dim() == 1:
        idx = idx.unsqueeze(0)
        attention_mask = attention_mask.unsqueeze(0) if attention_mask is not None else None
    if idx.size(1) == 0:
        raise GenerationError("the prompt is empty: give at least one token to continue from")
    if max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    next_token = resolve_sampler(sampler, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    block_size = model.config.block_size
    idx = idx[:, -block_size:]
    batch, prompt_length = idx.shape
    total = prompt_length + max_new_tokens
    try:  # every generated id is kept, so a count no memory can hold fails here, before any work
        tokens = torch.empty(batch, total, dtype=torch.long, device=idx.device)
    except (RuntimeError, TypeError):  # out of memory; a size past int64 fails to convert (TypeError)
        raise GenerationError(
            f"max_new_tokens={max_new_tokens} is more than memory holds ({batch} x {total} token ids); ask for fewer"
        ) from None
    tokens[:, :prompt_length] = idx

    real = None
    if attention_mask is not None:
        mask = attention_mask[:, -block_size:].to(device=idx.device, dtype=torch.bool)
        if not bool(mask.any(dim=1).all()):
            raise GenerationError("a prompt in the batch has no real tokens (its attention_mask is all zeros)")
        if not bool(mask.all()):
            real = torch.ones(batch, total, dtype=torch.bool, device=idx.device)
            real[:, :prompt_length] = mask
    if max_new_tokens == 0:
        return tokens

    kv_cache = model.allocate_kv_cache(batch, total) if hasattr(model, "allocate_kv_cache") else None
    finished = torch.zeros(batch, dtype=torch.bool, device=idx.device) if eos_token_id is not None else None
    pad = pad_token_id if pad_token_id is not None else eos_token_id
    was_training = model.training
    model.eval()
    try:
        logits = _last_logits(model, idx, real[:, :prompt_length] if real is not None else None, kv_cache)
        length = prompt_length
        while True:
            new = next_token(logits)
            if finished is not None:
                new = new.masked_fill(finished.unsqueeze(1), pad)
                finished |= new.squeeze(1) == eos_token_id
            tokens[:, length] = new.squeeze(1)
            length += 1
            if on_tokens is not None:
                on_tokens(new)
            if length == total or (finished is not None and bool(finished.all())):
                break
            if kv_cache is not None and kv_cache.length < kv_cache.capacity:
                logits = _last_logits(model, new, None, kv_cache)
                continue
            # The context is full (or there is no cache): run on the last block_size tokens afresh.
            start = max(0, length - block_size)
            if kv_cache is not None:
                kv_cache.reset()
            window_mask = real[:, start:length] if real is not None else None
            logits = _last_logits(model, tokens[:, start:length], window_mask, kv_cache)
    finally:
        model.train(was_training)
    return tokens[:, :length]
