"""The key/value cache and the attention masks of incremental decoding, shared by every architecture.

Decoding runs as one *prefill* (the prompt, possibly left-padded) followed by one-token steps. The cache
holds, per layer, preallocated key and value tensors of shape (B, n_head, capacity, head_dim), so a step
writes one slot and attends to a view of the filled prefix: no concatenation, no reallocation.

Left padding is described by `key_mask` (B, capacity), True where a slot holds a real token, and
`valid_count` (B,), the number of real tokens seen per row, which gives each new token its position.
While no padding has been seen both stay None and the masks are skipped altogether (the fast path).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionLayout:
    """What an attention layer needs to know about one forward call.

    `mask` is None (all keys visible, causally when `is_causal`) or a boolean (B, 1, T, T_keys) tensor,
    True where a query may attend to a key.
    """

    mask: torch.Tensor | None
    is_causal: bool


class KVCache:
    """Preallocated keys and values for `n_layer` layers, filled left to right."""

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        head_dim: int,
        capacity: int,
    ) -> None:
        self.shape = (batch_size, n_head, capacity, head_dim)
        # Allocated on each layer's first write, in the dtype its keys come in (float32, or bfloat16 under
        # autocast), so one cache serves either.
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer
        self.capacity = capacity
        self.batch_size = batch_size
        self.length = 0  # filled slots, the same for every row (left padding keeps the batch rectangular)
        self.key_mask: torch.Tensor | None = None
        self.valid_count: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget everything, keeping the allocated memory (used to re-prefill a slid window)."""
        self.length = 0
        self.key_mask = None
        self.valid_count = None

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's keys and values (B, H, T, D) of `layer`; return all of them so far."""
        end = self.length + key.size(2)
        if self.keys[layer] is None or self.keys[layer].dtype != key.dtype:
            if self.length:
                raise ValueError(f"KV cache holds {self.keys[layer].dtype} keys; a {key.dtype} step cannot extend them")
            self.keys[layer] = torch.empty(self.shape, device=key.device, dtype=key.dtype)
            self.values[layer] = torch.empty(self.shape, device=value.device, dtype=value.dtype)
        self.keys[layer][:, :, self.length : end] = key
        self.values[layer][:, :, self.length : end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, steps: int) -> None:
        """Mark `steps` more slots as filled; called once per forward, after the last layer."""
        self.length += steps


def positions_and_layout(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    kv_cache: KVCache | None,
) -> tuple[torch.Tensor, AttentionLayout]:
    """Token positions (B, T) or (1, T) and the attention layout of one forward call.

    Positions count real tokens only (cumsum of the mask minus one), so a left-padded row gets exactly
    the positions, and hence the logits, it would get without padding.
    """
    batch, length = input_ids.shape
    device = input_ids.device
    past = kv_cache.length if kv_cache is not None else 0
    if kv_cache is not None and past + length > kv_cache.capacity:
        raise ValueError(f"KV cache holds {kv_cache.capacity} positions; {past} used, {length} more requested")

    real = None
    if attention_mask is not None:
        real = attention_mask.to(device=device, dtype=torch.bool)
        if real.shape != input_ids.shape:
            raise ValueError(f"attention_mask has shape {tuple(real.shape)}, input_ids {tuple(input_ids.shape)}")
        if bool(real.all()):
            real = None  # nothing padded: take the fast path
    if kv_cache is not None and real is None and kv_cache.key_mask is not None:
        real = torch.ones(batch, length, dtype=torch.bool, device=device)

    if real is None:
        positions = torch.arange(past, past + length, device=device).unsqueeze(0)
        layout = AttentionLayout(
            mask=_causal_mask(length, past, device) if past and length > 1 else None,
            is_causal=past == 0 and length > 1,
        )
        return positions, layout

    counts = real.long().cumsum(-1)
    if kv_cache is not None:
        if kv_cache.key_mask is None:  # the first padded call: everything cached so far was real
            kv_cache.key_mask = torch.ones(batch, kv_cache.capacity, dtype=torch.bool, device=device)
            kv_cache.valid_count = torch.full((batch,), past, dtype=torch.long, device=device)
        kv_cache.key_mask[:, past : past + length] = real
        positions = (kv_cache.valid_count.unsqueeze(1) + counts - 1).clamp_min(0)
        kv_cache.valid_count = kv_cache.valid_count + counts[:, -1]
        key_valid = kv_cache.key_mask[:, : past + length]
    else:
        positions = (counts - 1).clamp_min(0)
        key_valid = real
    # A query sees the real keys up to itself, and always itself, so a pad query's softmax is never empty.
    query_at = torch.arange(past, past + length, device=device).unsqueeze(1)
    key_at = torch.arange(past + length, device=device).unsqueeze(0)
    mask = (((key_at < query_at) & key_valid[:, None, :]) | (key_at == query_at)).unsqueeze(1)
    return positions, AttentionLayout(mask=mask, is_causal=False)


def _causal_mask(length: int, past: int, device: torch.device) -> torch.Tensor:
    """(1, 1, T, past+T) causal mask for a chunk of several queries after `past` cached positions."""
    query_at = torch.arange(past, past + length, device=device).unsqueeze(1)
    key_at = torch.arange(past + length, device=device).unsqueeze(0)
    return (key_at <= query_at)[None, None]
