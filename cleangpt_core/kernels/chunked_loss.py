"""The output head and the next-token loss, computed a chunk of rows at a time: no (B, T, vocab) logits.

With a GPT-2 vocabulary (50,257 ids) the logits of one batch dwarf everything else a small model computes:
16 windows of 64 tokens make 206 MB of float32 logits, then as much again for the log-softmax, all allocated
and freed every step. On a CPU those buffers are fresh pages from the kernel each time, so evaluation spent
more system time than arithmetic. Here the head's product, the log-sum-exp, the loss and (when gradients are
wanted) the gradient of the loss with respect to the hidden states and the head's weight are computed for a
chunk of rows, into one logits buffer reused for every chunk, as Liger-Kernel's fused linear cross-entropy
does on GPUs; without gradients, for a tile of rows by a slice of the vocabulary. The gradients are computed
in the forward pass and kept, (N, C) and (V, C), which is far less than the (N, V) logits autograd would
otherwise keep.

Same numbers as the plain computation (`F.cross_entropy` of `hidden @ weight.T`, softcapped where the model
says): the loss and gradients agree to float32 rounding. Whether a head takes this path, and in chunks of what
size, is measured on the host at hand (`cleangpt_core.kernels.ops.head_loss_chunk`); a forward with labels
then computes its logits only when they are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree

IGNORE_INDEX = -100

# Chunk sizes in logits elements, measured with the GPT-2 vocabulary on the 2-core AVX2-only AMD EPYC of this
# project (benchmarks/bench_eval_vocab.py). With gradients, chunks of rows of 2^22 elements (about 80 rows):
# every chunk's weight-gradient product reads and writes the whole (V, C) gradient, so 20-row chunks made a
# training step slower than whole logits (569 against 547 ms) and 80-row ones 1.4x faster (381 ms). Without
# gradients, tiles of 2^20 (4 MB: they stay in cache from the product to the exponentials) of up to 2048 rows
# by a slice of the vocabulary (`_loss_by_vocabulary_tiles`).
TRAIN_CHUNK_ELEMENTS = 1 << 22
EVAL_CHUNK_ELEMENTS = 1 << 20
EVAL_BLOCK_ROWS = 2048


def next_token_targets(labels: torch.Tensor, length: int, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The target of each of `length` positions: labels[t+1], -100 where there is none or it is padding.

    Labels as long as the input (Hugging Face's convention) leave the last position without a target; labels
    one longer give it the token after the input.
    """
    extra = labels.size(1) - length
    if extra not in (0, 1):
        raise ValueError(
            f"labels hold {labels.size(1)} positions for {length} inputs; give as many as the inputs, "
            "or one more to give the last position a target"
        )
    if attention_mask is not None:
        labels = labels.masked_fill(F.pad(attention_mask, (0, extra), value=1) == 0, IGNORE_INDEX)
    return labels[:, 1:] if extra else F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def chunked_head_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None = None,
    elements: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``softcap(hidden @ weight.T)`` against `targets` (-100 ignored), chunk by chunk.

    `hidden` is (N, C), `weight` (V, C), `targets` (N,); chunks of at most `elements` logits (by default
    `TRAIN_CHUNK_ELEMENTS` with gradients, `EVAL_CHUNK_ELEMENTS` without). Under autocast the products run in
    its dtype and the loss in float32, as autocast would run the plain computation.
    """
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    with torch.autocast(device, enabled=False):
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            return _ChunkedHeadLoss.apply(hidden, weight, targets, softcap, dtype, elements or TRAIN_CHUNK_ELEMENTS)
        return _loss_by_vocabulary_tiles(hidden, weight, targets, softcap, dtype, elements or EVAL_CHUNK_ELEMENTS)


def _product_buffers(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """A buffer for the head's product in `dtype`, and the float32 one the loss is computed in: the loss is
    float32 whatever the product's dtype, and a float32 product is its own float32 buffer."""
    logits = torch.empty(rows, cols, dtype=dtype, device=device)
    return logits, logits if dtype == torch.float32 else torch.empty_like(logits, dtype=torch.float32)


def _product(
    h: torch.Tensor, w: torch.Tensor, logits_out: torch.Tensor, scores_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h @ w.T`` into `logits_out`, and the same numbers in float32 (`scores_out`, or the product itself)."""
    logits = torch.mm(h, w.t(), out=logits_out)
    return logits, logits if scores_out.dtype == logits.dtype else scores_out.copy_(logits)


def _loss_by_vocabulary_tiles(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None,
    dtype: torch.dtype,
    elements: int,
) -> torch.Tensor:
    """The loss alone (evaluation): each row's log-sum-exp accumulated over slices of the vocabulary.

    The online softmax (Milakov & Gimelshein, 2018; as FlashAttention computes it) keeps a running maximum
    and sum per row, so a tile of up to `EVAL_BLOCK_ROWS` rows by a slice of the vocabulary is the only large
    buffer, and each slice of the head's weight stays in cache for all the rows of a block, where chunks of
    rows read the whole weight once per chunk (1.3x their speed for the head alone, 1024 rows of width 32, on
    the AVX2 EPYC). The target's score is read from the tile that holds it, so it is the very number the plain
    computation's product gives.
    """
    rows, vocab = hidden.size(0), weight.size(0)
    block = max(1, min(rows, EVAL_BLOCK_ROWS, elements))
    width = max(1, min(vocab, elements // block))
    logits_buffer, scores_buffer = _product_buffers(block, width, dtype, hidden.device)
    valid = targets != IGNORE_INDEX
    loss_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, rows, block):
        h = hidden[start : start + block].to(dtype)
        chunk_targets = targets[start : start + block]
        row_max = torch.full((h.size(0),), -torch.inf, dtype=torch.float32, device=hidden.device)
        exp_sum = torch.zeros_like(row_max)
        target_score = torch.zeros_like(row_max)
        for first in range(0, vocab, width):
            w = weight[first : first + width].to(dtype)
            tile = (slice(h.size(0)), slice(w.size(0)))
            _, scores = _product(h, w, logits_buffer[tile], scores_buffer[tile])
            if softcap is not None:
                scores.div_(softcap).tanh_().mul_(softcap)
            offsets = chunk_targets - first
            here = (offsets >= 0) & (offsets < w.size(0))
            picked = scores.gather(1, offsets.clamp(0, w.size(0) - 1)[:, None]).squeeze(1)
            target_score += torch.where(here, picked, 0.0)
            new_max = torch.maximum(row_max, scores.amax(1))
            exp_sum.mul_((row_max - new_max).exp_()).add_(scores.sub_(new_max[:, None]).exp_().sum(1))
            row_max = new_max
        log_sum_exp = exp_sum.log_().add_(row_max)
        loss_sum += torch.where(valid[start : start + block], log_sum_exp - target_score, 0.0).sum()
    # no target at all: F.cross_entropy's mean is NaN (0 / 0), and so is this
    return loss_sum / valid.sum()


class _ChunkedHeadLoss(torch.autograd.Function):
    """The loss by chunks of rows, and its gradients computed alongside it (backward only scales them)."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        softcap: float | None,
        dtype: torch.dtype,
        elements: int,
    ) -> torch.Tensor:
        rows, vocab = hidden.size(0), weight.size(0)
        step = max(1, min(rows, elements // vocab))
        valid = targets != IGNORE_INDEX
        safe_targets = targets.clamp(min=0)[:, None]
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w = weight.to(dtype)
        logits_buffer, scores_buffer = _product_buffers(step, vocab, dtype, hidden.device)
        log_probs_buffer = torch.empty_like(scores_buffer)
        capped_buffer = torch.empty_like(scores_buffer) if softcap is not None else None
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        loss_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, rows, step):
            end = min(start + step, rows)
            h = hidden[start:end].to(dtype)
            logits, scores = _product(h, w, logits_buffer[: end - start], scores_buffer[: end - start])
            if capped_buffer is not None:  # Gemma 2's softcap: scores = cap * tanh(logits / cap)
                tanh = torch.tanh(scores.div_(softcap), out=capped_buffer[: end - start])
                scores = torch.mul(tanh, softcap, out=scores)
            # one fused, vectorised pass per row: half the time of logsumexp's max, subtract, exp and sum
            log_probs = torch.log_softmax(scores, dim=-1, out=log_probs_buffer[: end - start])
            chunk_targets, chunk_valid = safe_targets[start:end], valid[start:end]
            loss_sum -= torch.where(chunk_valid, log_probs.gather(1, chunk_targets).squeeze(1), 0.0).sum()
            # d loss / d scores = softmax - one-hot, on the rows that have a target
            grad = log_probs.exp_()
            grad.scatter_add_(1, chunk_targets, -chunk_valid[:, None].to(grad.dtype))
            grad.mul_(chunk_valid[:, None])
            if capped_buffer is not None:  # d(cap * tanh(z / cap)) / dz = 1 - tanh^2
                grad.mul_(tanh.mul_(tanh).neg_().add_(1.0))
            # under autocast the gradient reaches the products in their dtype, as autograd would pass it
            grad_in = grad if dtype == torch.float32 else logits.copy_(grad)
            if grad_hidden is not None:
                grad_hidden[start:end] = torch.mm(grad_in, w)
            if grad_weight is not None and dtype == torch.float32:
                grad_weight.addmm_(grad_in.t(), h)
            elif grad_weight is not None:
                grad_weight += torch.mm(grad_in.t(), h)
        count = valid.sum().clamp(min=1)
        ctx.save_for_backward(
            grad_hidden.div_(count) if grad_hidden is not None else None,
            grad_weight.div_(count).to(weight.dtype) if grad_weight is not None else None,
        )
        # no target at all: F.cross_entropy's mean is NaN (0 / 0), and so is this
        return loss_sum / valid.sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            grad_hidden * grad_loss if grad_hidden is not None else None,
            grad_weight * grad_loss if grad_weight is not None else None,
            None,
            None,
            None,
            None,
        )


class LazyLogits(dict):
    """A forward's output whose ``logits`` are computed when first read (the loss never needed them).

    A dict, as the model contract says, holding ``loss`` and ``logits``: reading ``logits`` in any way
    (indexing, ``get``, ``items``, ``values``, unpacking) computes them from the kept hidden states once.
    Registered with torch's pytree as a node holding only the loss, so DDP and FSDP find the loss's graph
    without computing the logits.
    """

    def __init__(self, loss: torch.Tensor, compute_logits: Callable[[], torch.Tensor]) -> None:
        super().__init__(logits=None, loss=loss)
        self._compute_logits: Callable[[], torch.Tensor] | None = compute_logits

    def _ready(self) -> None:
        if self._compute_logits is not None:
            compute, self._compute_logits = self._compute_logits, None
            dict.__setitem__(self, "logits", compute())

    def __getitem__(self, key: str) -> Any:
        if key == "logits":
            self._ready()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        if key == "logits":
            self._ready()
        return dict.get(self, key, default)

    def values(self) -> Any:
        self._ready()
        return dict.values(self)

    def items(self) -> Any:
        self._ready()
        return dict.items(self)

    def __iter__(self) -> Iterator[str]:  # overridden so dict(...) and {**...} read through __getitem__
        return iter(dict.keys(self))

    def copy(self) -> dict[str, Any]:
        return dict(self.items())

    def __repr__(self) -> str:
        state = "not computed yet" if self._compute_logits is not None else "computed"
        return f"LazyLogits(loss={dict.__getitem__(self, 'loss')!r}, logits {state})"


def _flatten(output: LazyLogits) -> tuple[list[Any], Any]:
    return [dict.__getitem__(output, "loss")], output


def _unflatten(children: list[Any], output: LazyLogits) -> LazyLogits:
    return LazyLogits(children[0], lambda: output["logits"])


pytree.register_pytree_node(LazyLogits, _flatten, _unflatten)
