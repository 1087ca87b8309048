"""The key/value cache and the attention layout of one forward call, shared by every architecture.

Decoding runs as one *prefill* (the prompt, possibly left-padded) followed by one-token steps. The cache
holds, per layer, preallocated key and value tensors of shape (B, kv_heads, capacity, head_dim), so a step
writes one slot and attends to a view of the filled prefix: no concatenation, no reallocation.

Left padding is described by `key_mask` (B, capacity), True where a slot holds a real token, and
`valid_count` (B,), the number of real tokens seen per row, which gives each new token its position.
While no padding has been seen both stay None and the masks are skipped altogether (the fast path).
Only the cache's own methods change its state: `add_tokens` records the slots a call will fill, `update`
writes a layer's keys and values, `advance` moves past them once every layer has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cleangpt_core.kernels import attention
from cleangpt_core.model.parametrization import attention_scale


@dataclass
class AttentionLayout:
    """What an attention part needs to know about one forward call, the same for every layer.

    - `mask`: None (all keys visible, causally when `is_causal`) or a boolean (B, 1, T, T_keys) tensor, True
      where a query may attend to a key;
    - `positions` (B or 1, T): each new token's position, counting real tokens only;
    - `past`: the slots already cached before this call (queries sit at slots past..past+T-1);
    - `rotary`: (cos, sin), each (B or 1, 1, T, head_dim), set by a rotary position encoding;
    - `bias`: an additive float score bias (1 or B, n_head, T, T_keys), set by ALiBi;
    - `mup_base_head_dim`: set by a decoder under muP, which scales scores by sqrt(it)/head_dim, not
      1/sqrt(head_dim) (`cleangpt_core.model.parametrization`).
    """

    mask: torch.Tensor | None
    is_causal: bool
    positions: torch.Tensor | None = None
    past: int = 0
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    bias: torch.Tensor | None = None
    mup_base_head_dim: int | None = None
    # cos and sin with its first half negated, in the queries' dtype: made by the first `rotate` of the call
    # and reused by every layer
    _rotation: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries and keys (B, heads, T, head_dim) rotated by their positions (unchanged without rotary).

        x * cos + rotate_half(x) * sin, with rotate_half(x) = (-x2, x1) written as roll(x) = (x2, x1) times
        a sin whose first half is negated: the same products, bit for bit, in fewer operations.
        """
        if self.rotary is None:
            return q, k
        if self._rotation is None:
            # In the queries' dtype: float32 angles would promote bfloat16 queries and keys (autocast) to
            # float32, doubling the rotation's work and sending attention down its float32 path.
            cos, sin = (angles.to(q.dtype) for angles in self.rotary)
            half = sin.size(-1) // 2
            self._rotation = cos, torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        cos, signed_sin = self._rotation
        half = q.size(-1) // 2
        return q * cos + q.roll(half, -1) * signed_sin, k * cos + k.roll(half, -1) * signed_sin

    def score_scale(self, head_dim: int) -> float | None:
        """What attention scores are multiplied by: None for the usual 1/sqrt(head_dim), else muP's."""
        return attention_scale(head_dim, self.mup_base_head_dim)

    def offsets(self, key_length: int, device: torch.device) -> torch.Tensor:
        """(T, T_keys): how many slots each key lies before each query (negative for later keys).

        Left padding sits before every real token, so between two real tokens slots and positions agree.
        """
        query_at = torch.arange(self.past, key_length, device=device).unsqueeze(1)
        return query_at - torch.arange(key_length, device=device).unsqueeze(0)

    def visible(self, key_length: int, device: torch.device) -> torch.Tensor:
        """The boolean mask (B or 1, 1, T, T_keys) of the keys each query may attend to, always materialised."""
        if self.mask is not None:
            return self.mask
        return (self.offsets(key_length, device) >= 0)[None, None]

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        dropout_p: float = 0.0,
        allow: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scaled dot-product attention (B, n_head, T, head_dim) under this layout.

        Keys and values may have fewer heads than the queries (grouped-query attention). `allow`, a boolean
        tensor broadcastable to (B, 1, T, T_keys), narrows what each query sees (a sliding window).
        """
        mask, is_causal = self.mask, self.is_causal  # the fast path: no mask tensor unless padding needs one
        if self.bias is not None or allow is not None:
            visible = self.visible(k.size(2), q.device)
            if allow is not None:
                visible = visible & allow
            mask = visible if self.bias is None else self.bias.to(q.dtype).masked_fill(~visible, float("-inf"))
            is_causal = False
        return attention(q, k, v, mask, is_causal, dropout_p, self.score_scale(q.size(-1)))


class KVCache:
    """Preallocated keys and values for `n_layer` layers, filled left to right.

    `n_head` and `head_dim` are kept for callers of plugin API 1.0: each layer's tensors take the shape of
    the keys it stores, so grouped-query attention caches only its key/value heads.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        head_dim: int,
        capacity: int,
    ) -> None:
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

    def add_tokens(
        self, real: torch.Tensor | None, length: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Record which of the next `length` slots will hold real tokens (`real` (B, T); None: all of them).

        Returns the new tokens' positions (B or 1, T), counting real tokens only, and which of the keys
        cached so far plus the new ones are real (B, past + T), or None while no padding was ever seen.
        """
        past = self.length
        if past + length > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; {past} used, {length} more requested")
        if real is None and self.key_mask is None:
            return torch.arange(past, past + length, device=device).unsqueeze(0), None
        if real is None:
            real = torch.ones(self.batch_size, length, dtype=torch.bool, device=device)
        if self.key_mask is None:  # the first padded call: everything cached so far was real
            self.key_mask = torch.ones(self.batch_size, self.capacity, dtype=torch.bool, device=device)
            self.valid_count = torch.full((self.batch_size,), past, dtype=torch.long, device=device)
        counts = real.long().cumsum(-1)
        self.key_mask[:, past : past + length] = real
        positions = (self.valid_count.unsqueeze(1) + counts - 1).clamp_min(0)
        self.valid_count = self.valid_count + counts[:, -1]
        return positions, self.key_mask[:, : past + length]

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's keys and values (B, H, T, D) of `layer`; return all of them so far."""
        keys, values, past, length = self.keys[layer], self.values[layer], self.length, key.size(2)
        if keys is None or keys.dtype != key.dtype:
            if past:
                raise ValueError(f"KV cache holds {keys.dtype} keys; a {key.dtype} step cannot extend them")
            shape = (self.batch_size, key.size(1), self.capacity, key.size(3))
            keys = self.keys[layer] = key.new_empty(shape)
            values = self.values[layer] = value.new_empty((*shape[:3], value.size(3)))
        keys.narrow(2, past, length).copy_(key)
        values.narrow(2, past, length).copy_(value)
        return keys.narrow(2, 0, past + length), values.narrow(2, 0, past + length)

    def advance(self, steps: int) -> None:
        """Mark `steps` more slots as filled; called once per forward, after the last layer."""
        self.length += steps


def begin_forward(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, kv_cache: KVCache | None
) -> AttentionLayout:
    """The attention layout of one forward call; with a cache, records the call's tokens in it (`add_tokens`).

    Positions count real tokens only (cumsum of the mask minus one), so a left-padded row gets exactly
    the positions, and hence the logits, it would get without padding.
    """
    length = input_ids.size(1)
    device = input_ids.device
    past = kv_cache.length if kv_cache is not None else 0
    real = None
    if attention_mask is not None:
        real = attention_mask.to(device=device, dtype=torch.bool)
        if real.shape != input_ids.shape:
            raise ValueError(f"attention_mask has shape {tuple(real.shape)}, input_ids {tuple(input_ids.shape)}")
        if bool(real.all()):
            real = None  # nothing padded: take the fast path

    if kv_cache is not None:
        positions, key_valid = kv_cache.add_tokens(real, length, device)
    elif real is None:
        positions, key_valid = torch.arange(length, device=device).unsqueeze(0), None
    else:
        positions, key_valid = (real.long().cumsum(-1) - 1).clamp_min(0), real

    if key_valid is None:
        causal = AttentionLayout(mask=None, is_causal=True, past=past)
        mask = causal.visible(past + length, device) if past and length > 1 else None
        return AttentionLayout(mask=mask, is_causal=past == 0 and length > 1, positions=positions, past=past)
    # A query sees the real keys up to itself, and always itself, so a pad query's softmax is never empty.
    offsets = AttentionLayout(mask=None, is_causal=False, past=past).offsets(past + length, device)
    mask = (((offsets > 0) & key_valid[:, None, :]) | (offsets == 0)).unsqueeze(1)
    return AttentionLayout(mask=mask, is_causal=False, positions=positions, past=past)
