"""The order in which a trainer sees batches: a pure function of (seed, epoch), sharded by rank, resumable.

A trainer does not iterate the caller's DataLoader as it is: a DataLoader shuffles with the global RNG and
cannot start in the middle of an epoch, so a resumed run would see other batches than a run that never
stopped. For a map-style dataset the loader is rebuilt around our own batch order (same dataset, batch
size, collate function and workers): a pseudo-random permutation keyed by (seed, epoch), dealt to ranks the
way DistributedSampler deals it, and started at any batch. The permutation is computed index by index
(`IndexPermutation`), never materialised, so an epoch over the billions of windows of a sharded corpus
costs no memory and batch b is found without drawing batches 0..b-1. A list of ready-made batches is
taken in order and dealt to ranks. Any other iterable is read as it is, skipping batches to resume, which is
exact only when the iterable itself is deterministic.

The order does not depend on the number of processes: global step s takes items [s*G, (s+1)*G) of the
epoch's order, G being the global batch (per-rank batch size times world size; an item is a sample, or a
ready-made batch). A checkpoint records how many items of the epoch were consumed, so a run resumed on
another number of processes continues the same order at the first global batch that had not begun: exact
when G is unchanged (2 processes x batch 4 resumed by 1 process x batch 8 sees the very same samples); when
G changes, up to G-1 items of that epoch are skipped, never repeated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from cleangpt_core.distributed.process_group import DistributedContext

Batch = dict[str, Any]


class EpochBatches:
    """The batches of every epoch, for one rank, from any position."""

    def __init__(
        self, source: Iterable[Batch], *, seed: int, context: DistributedContext, pin_memory: bool = False
    ) -> None:
        self.source = source
        self.seed = seed
        self.context = context
        self.pin_memory = pin_memory  # for a CUDA device: a rebuilt loader pins its batches (async copies)
        self.rebuilds = _rebuildable(source)
        if self.rebuilds:
            sampler = source.sampler
            self.shuffle = isinstance(sampler, RandomSampler) or bool(getattr(sampler, "shuffle", False))

    def __len__(self) -> int:
        """Batches this rank sees per epoch."""
        if self.rebuilds:
            per_rank = len(self.source.dataset) // self.context.world_size
            size = self.source.batch_size
            return per_rank // size if self.source.drop_last else -(-per_rank // size)
        if isinstance(self.source, Sequence):
            return len(self.source) // self.context.world_size
        return len(self.source)  # type: ignore[arg-type]  # raises TypeError for unsized iterables

    def items_consumed(self, batches: int, world_size: int | None = None) -> int:
        """Items of the epoch's order (all ranks together) that `batches` steps of this rank consumed.

        `world_size` counts for a checkpoint written by another number of processes (same per-rank batch).
        """
        world = world_size or self.context.world_size
        if self.rebuilds:
            return batches * self.source.batch_size * world
        return batches * world if isinstance(self.source, Sequence) else batches

    def batches_after(self, items: int) -> int:
        """This rank's index of the first batch that begins at or after item `items` of the epoch's order."""
        per_batch = self.items_consumed(1)
        return -(-items // per_batch)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` for this rank, beginning with batch number `start`."""
        if self.rebuilds:
            return iter(self._loader(epoch, start))
        if isinstance(self.source, Sequence):
            rank, world = self.context.rank, self.context.world_size
            mine = self.source[rank : len(self) * world : world]
            return iter(mine[start:])
        return islice(iter(self.source), start, None)

    def _order(self, epoch: int, start: int) -> BatchOrder:
        """This rank's batches of `epoch` from batch `start`, every rank having the same number (DDP needs it)."""
        permutation = IndexPermutation(len(self.source.dataset), (self.seed, epoch)) if self.shuffle else None
        return BatchOrder(permutation, len(self.source.dataset), self.source.batch_size, len(self), self.context, start)

    def _loader(self, epoch: int, start: int) -> DataLoader:
        source = self.source
        return DataLoader(
            source.dataset,
            batch_sampler=self._order(epoch, start),
            collate_fn=source.collate_fn,
            num_workers=source.num_workers,
            pin_memory=source.pin_memory or self.pin_memory,
            worker_init_fn=source.worker_init_fn,
            # the loader's own generator: iterating must not draw from the global RNG (dropout uses it)
            generator=torch.Generator().manual_seed(self.seed + epoch),
        )


class IndexPermutation:
    """A pseudo-random bijection of ``range(count)`` keyed by `key`, evaluated for any index in O(1).

    A balanced Feistel network permutes the integers of ``bits`` bits (the smallest even width covering
    `count`); values that land outside ``range(count)`` are mapped again until they fall inside (cycle
    walking), which keeps the map a bijection of ``range(count)``. The domain is under four times `count`,
    so a few rounds of walking at most on average.
    """

    ROUNDS = 6

    def __init__(self, count: int, key: tuple[int, ...]) -> None:
        self.count = count
        bits = max(2, (count - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        entropy = [k % 2**63 for k in key]
        self.round_keys = np.random.default_rng(entropy).integers(0, 2**63, size=self.ROUNDS, dtype=np.uint64)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """The permuted values of `positions` (integers in ``range(count)``)."""
        values = self._feistel(np.asarray(positions, dtype=np.uint64))
        outside = values >= self.count
        while outside.any():
            values[outside] = self._feistel(values[outside])
            outside = values >= self.count
        return values.astype(np.int64)

    def _feistel(self, values: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half)
        left, right = values >> shift, values & self.mask
        for key in self.round_keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << shift) | right


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit flips about half the output bits."""
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


class BatchOrder:
    """The index lists of one rank's batches of an epoch, from batch `start` on (a DataLoader batch_sampler).

    Position ``p`` of the epoch's order holds ``permutation(p)`` (or ``p`` unshuffled); rank r takes
    positions r, r + world, r + 2 * world, ... as DistributedSampler deals them, so ranks never share an item.
    """

    def __init__(
        self,
        permutation: IndexPermutation | None,
        count: int,
        batch_size: int,
        num_batches: int,
        context: DistributedContext,
        start: int = 0,
    ) -> None:
        self.permutation, self.batch_size, self.context = permutation, batch_size, context
        self.per_rank = count // context.world_size
        self.num_batches, self.start = num_batches, start

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        world, rank = self.context.world_size, self.context.rank
        for batch in range(self.start, self.num_batches):
            mine = np.arange(batch * self.batch_size, min((batch + 1) * self.batch_size, self.per_rank))
            positions = mine * world + rank
            yield (positions if self.permutation is None else self.permutation(positions)).tolist()


def _rebuildable(source: Iterable[Batch]) -> bool:
    return (
        isinstance(source, DataLoader)
        and not isinstance(source.dataset, IterableDataset)
        and source.batch_size is not None
        and isinstance(source.sampler, RandomSampler | SequentialSampler | DistributedSampler)
    )


def shard_for_evaluation(source: Iterable[Batch], context: DistributedContext) -> Iterator[Batch]:
    """This rank's share of an evaluation set: every batch goes to exactly one rank (no padding)."""
    if not context.enabled:
        return iter(source)
    if _rebuildable(source):
        count = len(source.dataset)  # type: ignore[attr-defined]
        mine = list(range(context.rank, count, context.world_size))
        size = source.batch_size  # type: ignore[attr-defined]
        return iter(
            DataLoader(
                source.dataset,  # type: ignore[attr-defined]
                batch_sampler=[mine[i : i + size] for i in range(0, len(mine), size)],
                collate_fn=source.collate_fn,  # type: ignore[attr-defined]
            )
        )
    return islice(iter(source), context.rank, None, context.world_size)
