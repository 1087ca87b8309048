"""Every host kernel computes what PyTorch's own computation does, to float tolerance, with and without gradients,
in float32 and under bf16 autocast: a choice between them changes speed, never the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cleangpt_core.kernels import attention, fixed, gelu_tanh, head_loss_chunk, linear
from cleangpt_core.kernels.chunked_loss import chunked_head_loss
from cleangpt_core.kernels.cpu_gemm import ONEDNN_AVAILABLE
from cleangpt_core.kernels.ops import whole_head_loss
from cleangpt_core.model import get_model

TOLERANCE = {torch.float32: {"rtol": 1e-4, "atol": 1e-4}, torch.bfloat16: {"rtol": 2e-2, "atol": 2e-2}}
DTYPES = [torch.float32, torch.bfloat16]


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _run(function, tensors: list[torch.Tensor], grad: bool, dtype: torch.dtype, seed: int = 1):
    """`function(*tensors)` (under bf16 autocast for bf16), and the gradients of the tensors for a random
    upstream gradient when `grad`."""
    leaves = [t.detach().clone().requires_grad_(grad) for t in tensors]
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = function(*leaves)
    if not grad:
        return out.float(), []
    out.float().backward(torch.randn(out.shape, generator=_generator(seed)))
    return out.detach().float(), [leaf.grad.float() for leaf in leaves]


def _assert_same(kernel_run, plain_run, dtype: torch.dtype) -> None:
    (out, grads), (expected, expected_grads) = kernel_run, plain_run
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, **TOLERANCE[dtype])


@pytest.mark.skipif(not ONEDNN_AVAILABLE, reason="this PyTorch build has no oneDNN")
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_onednn_products_equal_f_linear(dtype, grad):
    generator = _generator()
    x, weight = torch.randn(12, 64, 128, generator=generator), torch.randn(384, 128, generator=generator) * 0.05
    bias = torch.randn(384, generator=generator)
    with fixed(linear="onednn"):
        ours = _run(linear, [x, weight, bias], grad, dtype)
    _assert_same(ours, _run(F.linear, [x, weight, bias], grad, dtype), dtype)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_sigmoid_gelu_equals_the_tanh_gelu(dtype, grad):
    x = torch.randn(64, 96, generator=_generator()) * 4
    with fixed(gelu="sigmoid"):
        ours = _run(gelu_tanh, [x], grad, dtype)
    _assert_same(ours, _run(lambda x: F.gelu(x, approximate="tanh"), [x], grad, dtype), dtype)


def _sdpa(q, k, v, mask, is_causal):
    grouped = k.size(1) != q.size(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=grouped)


@pytest.mark.parametrize("masking", ["causal", "boolean", "additive", "none"])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_attention_equals_sdpa(dtype, grad, masking):
    generator = _generator()
    q = torch.randn(2, 4, 16, 8, generator=generator)
    k, v = torch.randn(2, 2, 16, 8, generator=generator), torch.randn(2, 2, 16, 8, generator=generator)  # GQA
    visible = torch.rand(2, 1, 16, 16, generator=generator) > 0.3
    visible[..., 0] = True  # every query sees a key
    mask = {"boolean": visible, "additive": torch.randn(2, 1, 16, 16, generator=generator), "causal": None}.get(masking)
    is_causal = masking == "causal"

    def ours(q, k, v):
        return attention(q, k, v, None if mask is None else mask.to(q.dtype if masking == "additive" else torch.bool),
                         is_causal, 0.0, None)  # fmt: skip

    def plain(q, k, v):
        return _sdpa(q, k, v, None if mask is None else mask.to(q.dtype if masking == "additive" else torch.bool),
                     is_causal)  # fmt: skip

    with fixed(attention="matmul"):
        result = _run(ours, [q, k, v], grad, dtype)
    _assert_same(result, _run(plain, [q, k, v], grad, dtype), dtype)


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("elements", [97, 97 * 7, 1 << 20])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_chunked_head_equals_whole_logits(dtype, grad, elements, softcap):
    generator = _generator()
    hidden, weight = torch.randn(50, 16, generator=generator), torch.randn(97, 16, generator=generator)
    targets = torch.randint(0, 97, (50,), generator=generator)
    targets[[3, 17]] = -100

    def ours(hidden, weight):
        return chunked_head_loss(hidden, weight, targets, softcap, elements)

    result = _run(ours, [hidden, weight], grad, dtype)
    _assert_same(
        result, _run(lambda h, w: whole_head_loss(h, w, targets, softcap), [hidden, weight], grad, dtype), dtype
    )


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_model_computes_the_same_with_every_alternative_kernel(dtype, grad):
    """The model as a whole: each operation on its alternative, against each on PyTorch's own computation."""
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=97, n_layer=2, n_head=4, n_embd=128, block_size=64)
    tokens = torch.randint(0, 97, (12, 64), generator=_generator(2))
    alternatives = fixed(linear="onednn", gelu="sigmoid", attention="matmul", head_loss="chunks:1024")
    plain = fixed(linear="plain", gelu="plain", attention="plain", head_loss="plain")
    results = []
    for kernels in (alternatives, plain):
        model.zero_grad(set_to_none=True)
        with (
            kernels,
            torch.set_grad_enabled(grad),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16),
        ):
            loss = model(tokens, labels=tokens)["loss"]
        if grad:
            loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()] if grad else []))
    (loss, grads), (expected, expected_grads) = results
    torch.testing.assert_close(loss, expected, **TOLERANCE[dtype])
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=TOLERANCE[dtype]["rtol"] * 10, atol=TOLERANCE[dtype]["atol"] * 10)


def test_the_head_chunks_only_with_chunks_fixed_or_measured_faster():
    hidden, weight = torch.randn(4096, 8), torch.randn(1024, 8)
    targets = torch.zeros(4096, dtype=torch.long)
    with fixed(head_loss="plain"):
        assert head_loss_chunk(hidden, weight, targets, None) is None
    with fixed(head_loss="chunks:8192"):
        assert head_loss_chunk(hidden, weight, targets, None) == 8192
