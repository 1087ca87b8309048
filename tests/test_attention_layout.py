"""`AttentionLayout.attend` on CPU, where it runs plain matmuls instead of SDPA's fused kernel (bfloat16, and
float32 up to `MATMUL_ATTENTION_MAX_KEYS` keys): the same attention as SDPA computes in float32 on the same
inputs, for every mask a layout can carry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cleangpt_core.model.kv_cache import AttentionLayout

BATCH, HEADS, LENGTH, HEAD_DIM = 2, 4, 8, 16


# (dtype, tolerance): bfloat16 keeps 8 bits of mantissa; float32 differs from SDPA by summation order only
PRECISIONS = {"bfloat16": (torch.bfloat16, 2e-2), "float32": (torch.float32, 1e-5)}


def _inputs(kv_heads: int, dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(BATCH, HEADS, LENGTH, HEAD_DIM, generator=generator)
    k = torch.randn(BATCH, kv_heads, LENGTH, HEAD_DIM, generator=generator)
    v = torch.randn(BATCH, kv_heads, LENGTH, HEAD_DIM, generator=generator)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _padding_mask() -> torch.Tensor:
    real = torch.ones(BATCH, LENGTH, dtype=torch.bool)
    real[1, :3] = False  # the second row is left-padded
    causal = torch.ones(LENGTH, LENGTH, dtype=torch.bool).tril()
    return (causal & real[:, None, :] | torch.eye(LENGTH, dtype=torch.bool)).unsqueeze(1)


LAYOUTS = {
    "causal": lambda: AttentionLayout(mask=None, is_causal=True),
    "padding": lambda: AttentionLayout(mask=_padding_mask(), is_causal=False),
    "alibi": lambda: AttentionLayout(mask=None, is_causal=True, bias=-torch.rand(1, HEADS, LENGTH, LENGTH)),
}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kv_heads", [HEADS, 2, 1])
@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_attention_on_cpu_matches_sdpa_in_float32(layout_name, kv_heads, precision):
    dtype, tolerance = PRECISIONS[precision]
    layout = LAYOUTS[layout_name]()
    q, k, v = _inputs(kv_heads, dtype)
    window = torch.arange(LENGTH)[:, None] - torch.arange(LENGTH)[None, :] < 3
    for allow in (None, window):
        visible = layout.visible(LENGTH, q.device) if allow is None else layout.visible(LENGTH, q.device) & allow
        mask = visible if layout.bias is None else layout.bias.masked_fill(~visible, float("-inf"))
        expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=True)
        got = layout.attend(q, k, v, allow=allow)
        assert got.dtype == dtype and got.shape == expected.shape
        torch.testing.assert_close(got.float(), expected, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_attention_on_cpu_has_gradients_like_sdpa(precision):
    dtype, tolerance = PRECISIONS[precision]
    q, k, v = (t.float().requires_grad_() for t in _inputs(2))
    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).square().sum().backward()
    expected = [t.grad for t in (q, k, v)]
    low = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    AttentionLayout(mask=None, is_causal=True).attend(*low).float().square().sum().backward()
    for got, want in zip((t.grad for t in low), expected, strict=True):
        torch.testing.assert_close(got.float(), want, atol=2.5 * tolerance, rtol=2.5 * tolerance)


def test_rotary_keeps_bfloat16_queries_and_keys_in_bfloat16():
    q, k, _ = _inputs(2)
    angles = torch.arange(LENGTH, dtype=torch.float32)[:, None] * torch.rand(HEAD_DIM // 2)
    angles = torch.cat((angles, angles), dim=-1)
    layout = AttentionLayout(mask=None, is_causal=True, rotary=(angles.cos()[None, None], angles.sin()[None, None]))
    rotated_q, rotated_k = layout.rotate(q, k)
    expected_q, expected_k = layout.rotate(q.float(), k.float())
    assert rotated_q.dtype == rotated_k.dtype == torch.bfloat16
    torch.testing.assert_close(rotated_q.float(), expected_q, atol=3e-2, rtol=2e-2)
    torch.testing.assert_close(rotated_k.float(), expected_k, atol=3e-2, rtol=2e-2)
