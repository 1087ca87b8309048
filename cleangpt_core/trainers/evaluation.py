"""Exact evaluation of a causal language model: mean loss per predicted token, and its perplexity."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.data.progress import EvaluationProgress
from cleangpt_core.data.windows import IGNORE_INDEX
from cleangpt_core.distributed.process_group import DistributedContext, all_reduce_sum
from cleangpt_core.trainers.batches import Batch, shard_for_evaluation
from cleangpt_core.trainers.training_checkpoint import capture_rng_state, restore_rng_state


def labels_of(batch: Batch) -> torch.Tensor:
    """The labels of a batch; a batch without labels is scored on its inputs (labels are shifted inside)."""
    return batch["labels"] if "labels" in batch else batch["input_ids"]


def count_targets(batch: Batch) -> int:
    """Tokens the batch's loss averages over: label positions after the first, minus -100 and masked ones."""
    labels = labels_of(batch)
    targets = labels[..., 1:] != IGNORE_INDEX
    if batch.get("attention_mask") is not None:
        final = labels.size(-1) - batch["input_ids"].size(-1)  # 1 where the labels reach one token past the input
        targets &= F.pad(batch["attention_mask"][..., 1:], (0, final), value=1) != 0
    return int(targets.sum())


def batch_to(batch: Batch, device: torch.device) -> Batch:
    """The batch with its tensors on `device`, labels filled in from the inputs if absent.

    A copy to a GPU runs asynchronously only from pinned memory (the trainer's DataLoader pins on CUDA); from
    pageable memory `non_blocking` buys nothing, and MPS and CPUs get the plain copy.
    """
    to_gpu = torch.device(device).type == "cuda"  # callers may name the device as a string
    moved = {key: value.to(device, non_blocking=to_gpu and value.is_pinned()) for key, value in batch.items()}
    moved.setdefault("labels", moved["input_ids"])
    return moved


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device,
    *,
    context: DistributedContext | None = None,
    autocast: AbstractContextManager[Any] | None = None,
    max_batches: int | None = None,
    lockstep: bool = False,
) -> dict[str, Any]:
    """Mean cross-entropy per predicted token over `batches`, perplexity = exp(loss), the token count and the
    loss's standard error.

    The loss is (sum of token losses) / (number of tokens), padding excluded, so it does not depend on how
    the data is batched; under torchrun every rank takes its own batches and the sums are combined.
    ``stderr`` is the standard error of that mean with the batches as the units (`batch_standard_error`; None
    from fewer than two batches).
    `max_batches` limits the estimate to the first batches (per rank). `lockstep` (FSDP, whose every
    forward is collective) keeps ranks with no batch left running empty forwards until all are done. The
    global RNG state is left as it was: iterating a DataLoader draws from it, and evaluating must not change
    what training draws next. A long evaluation shows its progress (`EvaluationProgress`) on the main process.
    """
    context = context or DistributedContext()
    rng_state = capture_rng_state()
    was_training = model.training
    model.eval()
    # each batch's loss sum stays on the device (float32: MPS has no float64) until one read at the end, and
    # is added up on the host in float64; token counts come from the host's batches, so no batch waits
    loss_sums: list[torch.Tensor] = []
    batch_tokens: list[int] = []
    tokens = 0
    progress = EvaluationProgress(
        "evaluate", _batches_per_rank(batches, context, max_batches), enabled=context.is_main
    )
    try:
        mine = islice(shard_for_evaluation(batches, context), max_batches)
        for batch in _in_lockstep(mine, context, device) if lockstep else mine:
            if batch is None:  # this rank is done; it takes part in the others' gathers and counts nothing
                model(torch.zeros((1, 1), dtype=torch.long, device=device))
                continue
            targets = count_targets(batch)
            batch = batch_to(batch, device)
            with autocast or nullcontext():
                loss = model(**batch)["loss"]
            loss_sums.append(loss.float() * targets)
            batch_tokens.append(targets)
            tokens += targets
            progress.update(tokens=targets)
    finally:
        progress.close()
        model.train(was_training)
        restore_rng_state(rng_state)
    batch_sums = torch.stack(loss_sums).tolist() if loss_sums else []
    mine = [math.fsum(batch_sums), float(tokens), float(len(batch_sums))]
    loss_sum, tokens, batches = all_reduce_sum(torch.tensor(mine).to(device), context).tolist()
    if tokens == 0:
        raise ValueError("the evaluation data holds no tokens to predict")
    mean = loss_sum / tokens
    # the spread of the batches around the mean: a second, equally small collective, once the mean is known
    spread = math.fsum((total - mean * count) ** 2 for total, count in zip(batch_sums, batch_tokens, strict=True))
    spread = all_reduce_sum(torch.tensor([spread]).to(device), context).item() if context.enabled else spread
    try:
        perplexity = math.exp(mean)
    except OverflowError:  # a loss beyond ~709.8 nats (a far too high learning rate): past a float's range
        perplexity = math.inf
    return {
        "loss": mean,
        "perplexity": perplexity,
        "tokens": int(tokens),
        "stderr": batch_standard_error(spread, tokens, int(batches)),
    }


def batch_standard_error(spread: float, tokens: float, batches: int) -> float | None:
    """The standard error of a mean loss per token, from the batches' sums of squared deviations from it.

    Each batch is a run of consecutive windows of the text, and neighbouring tokens' losses are correlated, so
    the batch, not the token, is the independent unit: the ratio estimator's variance over `batches` clusters,
    ``batches / (batches - 1) * sum_b (S_b - mean * n_b)^2 / N^2`` (S_b a batch's loss sum, n_b its tokens, N
    all of them). None from fewer than two batches, where no spread can be seen.
    """
    if batches < 2:
        return None
    return math.sqrt(batches / (batches - 1) * spread) / tokens


def _batches_per_rank(batches: Iterable[Batch], context: DistributedContext, max_batches: int | None) -> int | None:
    """How many batches this rank will score, when the data says how many it holds."""
    try:
        count = -(-len(batches) // context.world_size)  # type: ignore[arg-type]
    except TypeError:  # an iterable without a length
        return max_batches
    return count if max_batches is None else min(count, max_batches)


def _in_lockstep(batches: Iterable[Batch], context: DistributedContext, device: torch.device) -> Iterator[Batch | None]:
    """This rank's batches, then None until every rank has run out (one all-reduce per round)."""
    iterator = iter(batches)
    while True:
        batch = next(iterator, None)
        ranks_with_a_batch = all_reduce_sum(torch.full((), float(batch is not None), device=device), context)
        if ranks_with_a_batch.item() == 0:
            return
        yield batch
