"""The operations the model's parts call, each computed by the kernel chosen for its shape on this host.

Each has PyTorch's own computation as its first candidate ("plain") and, on a CPU, the alternatives the
modules beside this one hold: oneDNN for float32 products (`cpu_gemm`), GPT-2's GELU through the sigmoid
(`gelu`), attention as two matmuls (`matmul_attention`), the head and loss in chunks (`chunked_loss`). A GPU,
and code being compiled by `torch.compile` (which picks its own kernels), get PyTorch's computation after one
check. The timed calls run on copies of the very arguments, detached, with a backward where the call has
gradients, and draw no random numbers (dropout is left out), so measuring leaves a run's randomness as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from cleangpt_core.kernels.choices import choose, fixed, fixed_kernel
from cleangpt_core.kernels.chunked_loss import EVAL_CHUNK_ELEMENTS, TRAIN_CHUNK_ELEMENTS, chunked_head_loss
from cleangpt_core.kernels.cpu_gemm import onednn_applies, onednn_product
from cleangpt_core.kernels.gelu import sigmoid_gelu
from cleangpt_core.kernels.matmul_attention import MATMUL_ATTENTION_MAX_KEYS, matmul_attention
from cleangpt_core.kernels.tuner import PLAIN

# The head's chunk sizes (logits elements) timed against whole logits: the sizes measured best on the AVX2-only
# EPYC (`chunked_loss`) and four times as large (measured as fast on the AVX-512 one); a quarter of them was
# slower on both. Two sizes keep the timing of a GPT-2-sized head to a few seconds, once per host.
TRAIN_CHUNK_CANDIDATES = (TRAIN_CHUNK_ELEMENTS, TRAIN_CHUNK_ELEMENTS * 4)
EVAL_CHUNK_CANDIDATES = (EVAL_CHUNK_ELEMENTS, EVAL_CHUNK_ELEMENTS * 4)


def _bucket(n: int) -> int:
    """`n` rounded up to a power of two: shapes within a factor of two share a choice."""
    return 1 << max(0, n - 1).bit_length()


def _timed(
    function: Callable[..., torch.Tensor], args: tuple[torch.Tensor | None, ...], grad: bool
) -> Callable[[], object]:
    """One call of `function` on detached copies of `args`, with a backward when `grad`.

    The backward's upstream gradient is a dense tensor, as a model's is: the expanded one of ``out.sum()``
    (stride 0) let products run at speeds no training step sees.
    """
    if not grad:
        return lambda: function(*args)
    leaves = tuple(
        arg.detach().requires_grad_(arg.requires_grad) if isinstance(arg, torch.Tensor) else arg for arg in args
    )
    upstream: list[torch.Tensor] = []

    def run() -> None:
        out = function(*leaves)
        if not upstream:
            upstream.append(torch.ones_like(out))
        out.backward(upstream[0])
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                leaf.grad = None

    return run


def _with_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _dtype_name(t: torch.Tensor) -> str:
    device = t.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else t.dtype
    return str(dtype).removeprefix("torch.")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` (`F.linear`)."""
    if torch.compiler.is_compiling() or not x.is_cpu or not onednn_applies(x, weight):
        return F.linear(x, weight, bias)
    grad = _with_grad(x, weight, bias)
    shape = ("linear", "float32", "grad" if grad else "eval", _bucket(x.numel() // x.size(-1)), *weight.shape)
    kernel = choose(shape, lambda: _linear_candidates(x, weight, bias, grad))
    return onednn_product(x, weight, bias) if kernel == "onednn" else F.linear(x, weight, bias)


def _linear_candidates(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, grad: bool
) -> Mapping[str, Callable[[], object]]:
    return {PLAIN: _timed(F.linear, (x, weight, bias), grad), "onednn": _timed(onednn_product, (x, weight, bias), grad)}


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``F.gelu(x, approximate="tanh")``)."""
    if torch.compiler.is_compiling() or not x.is_cpu or x.dtype != torch.float32:
        return F.gelu(x, approximate="tanh")
    grad = _with_grad(x)
    shape = ("gelu", "float32", "grad" if grad else "eval", _bucket(x.numel()))
    kernel = choose(shape, lambda: _gelu_candidates(x, grad))
    return sigmoid_gelu(x) if kernel == "sigmoid" else F.gelu(x, approximate="tanh")


def _tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _gelu_candidates(x: torch.Tensor, grad: bool) -> Mapping[str, Callable[[], object]]:
    return {PLAIN: _timed(_tanh_gelu, (x,), grad), "sigmoid": _timed(sigmoid_gelu, (x,), grad)}


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    dropout_p: float,
    scale: float | None,
) -> torch.Tensor:
    """``softmax(q k^T * scale + mask) v`` per head (`F.scaled_dot_product_attention`); keys and values may have
    fewer heads than the queries (grouped-query attention). `mask` is boolean (True: may attend) or additive."""
    long_float32 = q.dtype != torch.bfloat16 and k.size(2) > MATMUL_ATTENTION_MAX_KEYS  # matmuls' weights too big
    if torch.compiler.is_compiling() or not q.is_cpu or long_float32:
        return _sdpa(q, k, v, mask, is_causal, dropout_p, scale)
    grad = _with_grad(q, k, v)
    masking = "causal" if is_causal else "none" if mask is None else "mask"
    shape = (
        "attention",
        str(q.dtype).removeprefix("torch."),
        "grad" if grad else "eval",
        _bucket(q.size(0) * q.size(1)),
        _bucket(q.size(2)),
        _bucket(k.size(2)),
        q.size(3),
        masking,
    )
    kernel = choose(shape, lambda: _attention_candidates(q, k, v, mask, is_causal, scale, grad))
    run = matmul_attention if kernel == "matmul" else _sdpa
    return run(q, k, v, mask, is_causal, dropout_p, scale)


def _sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    dropout_p: float,
    scale: float | None,
) -> torch.Tensor:
    grouped = k.size(1) != q.size(1)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, enable_gqa=grouped
    )


def _attention_candidates(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    scale: float | None,
    grad: bool,
) -> Mapping[str, Callable[[], object]]:
    def using(kernel: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return lambda q, k, v: kernel(q, k, v, mask, is_causal, 0.0, scale)

    return {PLAIN: _timed(using(_sdpa), (q, k, v), grad), "matmul": _timed(using(matmul_attention), (q, k, v), grad)}


def head_loss_chunk(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> int | None:
    """How to compute the output head's loss, ``cross_entropy(softcap(hidden @ weight.T), targets)``: in chunks
    of how many logits (`chunked_loss.chunked_head_loss`), or None for whole logits.

    `hidden` is (N, C), `weight` (V, C), `targets` (N,).
    """
    if torch.compiler.is_compiling() or not hidden.is_cpu:
        return None
    rows, vocab = hidden.size(0), weight.size(0)
    grad = _with_grad(hidden, weight)
    sizes = [size for size in (TRAIN_CHUNK_CANDIDATES if grad else EVAL_CHUNK_CANDIDATES) if rows * vocab > size]
    shape = ("head_loss", _dtype_name(hidden), "grad" if grad else "eval", _bucket(rows), hidden.size(1), vocab)
    shape += ("softcap",) if softcap is not None else ()
    if sizes:
        kernel = choose(shape, lambda: _head_candidates(hidden, weight, targets, softcap, sizes, grad))
    else:  # one chunk would hold the logits: nothing to measure, unless chunks were fixed (`chunked_head(1)`)
        kernel = fixed_kernel("head_loss")
    if kernel is None or kernel == PLAIN:
        return None
    elements = int(kernel.removeprefix("chunks:"))
    return elements if rows * vocab > elements else None


def whole_head_loss(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    """The plain computation of the head's loss: whole logits, then `F.cross_entropy` in float32."""
    logits = linear(hidden, weight)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.float(), targets, ignore_index=-100)


def _head_candidates(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None,
    sizes: list[int],
    grad: bool,
) -> Mapping[str, Callable[[], object]]:
    candidates = {PLAIN: _timed(lambda h, w: whole_head_loss(h, w, targets, softcap), (hidden, weight), grad)}
    for size in sizes:
        chunks = lambda h, w, size=size: chunked_head_loss(h, w, targets, softcap, size)  # noqa: E731
        candidates[f"chunks:{size}"] = _timed(chunks, (hidden, weight), grad)
    return candidates


class onednn_linear(fixed):  # noqa: N801 - a context manager, named like torch.no_grad
    """Within the block, float32 CPU products on oneDNN (True) or PyTorch's MKL (False), whatever was measured."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(linear="onednn" if enabled else PLAIN)


class chunked_head(fixed):  # noqa: N801 - a context manager, named like torch.no_grad
    """Within the block, compute a CPU head's logits larger than `elements` in chunks of at most `elements`
    (1: one row at a time, whatever the vocabulary; a huge number: the plain computation, whole logits)."""

    def __init__(self, elements: int = TRAIN_CHUNK_ELEMENTS) -> None:
        super().__init__(head_loss=f"chunks:{max(1, elements)}")
