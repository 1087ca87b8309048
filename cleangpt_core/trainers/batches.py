"""The order in which a trainer sees batches: a pure function of (seed, epoch), sharded by rank, resumable.

A DataLoader that shuffles draws from the global RNG and cannot start in the middle of an epoch, so a resumed
run would see other batches than a run that never stopped. A training DataLoader is therefore built here, by
`resumable_loader`, around our own batch sampler (`ResumableBatchSampler`): a pseudo-random permutation keyed
by (seed, epoch), dealt to ranks the way DistributedSampler deals it, and started at any batch. The
experiment runner builds its loader with it, and a trainer iterates that very loader. A plain map-style
DataLoader a caller passes to a trainer (the tutorial's way) is turned into one once, with the same dataset,
batch size, collate function and workers. The permutation is computed index by index (`IndexPermutation`),
never materialised, so an epoch over the billions of windows of a sharded corpus costs no memory and batch b
is found without drawing batches 0..b-1. A list of ready-made batches is taken in order and dealt to ranks.
Any other iterable is read as it is, skipping batches to resume, which is exact only when the iterable
itself is deterministic.

The order does not depend on the number of processes: global step s takes items [s*G, (s+1)*G) of the
epoch's order, G being the global batch (per-rank batch size times world size; an item is a sample, or a
ready-made batch). A checkpoint records how many items of the epoch were consumed, so a run resumed on
another number of processes continues the same order at the first global batch that had not begun: exact
when G is unchanged (2 processes x batch 4 resumed by 1 process x batch 8 sees the very same samples); when
G changes, up to G-1 items of that epoch are skipped, never repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, Sampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from cleangpt_core.distributed.process_group import DistributedContext

Batch = dict[str, Any]


class EpochBatches:
    """The batches of every epoch, for one rank, from any position."""

    def __init__(self, source: Iterable[Batch], *, seed: int, context: DistributedContext) -> None:
        self.source = source
        self.seed = seed
        self.context = context
        self.loader = _resumable(source)
        if self.loader is not None:
            self.sampler: ResumableBatchSampler = self.loader.batch_sampler
            self.sampler.bind(seed, context)

    def __len__(self) -> int:
        """Batches this rank sees per epoch."""
        if self.loader is not None:
            return self.sampler.batches_per_epoch
        if isinstance(self.source, Sequence):
            return len(self.source) // self.context.world_size
        return len(self.source)  # type: ignore[arg-type]  # raises TypeError for unsized iterables

    def items_consumed(self, batches: int, world_size: int | None = None) -> int:
        """Items of the epoch's order (all ranks together) that `batches` steps of this rank consumed.

        `world_size` counts for a checkpoint written by another number of processes (same per-rank batch).
        """
        world = world_size or self.context.world_size
        if self.loader is not None:
            return batches * self.sampler.batch_size * world
        return batches * world if isinstance(self.source, Sequence) else batches

    def batches_after(self, items: int) -> int:
        """This rank's index of the first batch that begins at or after item `items` of the epoch's order."""
        per_batch = self.items_consumed(1)
        return -(-items // per_batch)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` for this rank, beginning with batch number `start`."""
        if self.loader is not None:
            self.sampler.set_position(epoch, start)
            # the loader's own generator seeds its workers: iterating must not draw from the global RNG (dropout
            # uses it), and a resumed run's workers get the seeds an uninterrupted run's got
            self.loader.generator.manual_seed(self.seed + epoch)
            return iter(self.loader)
        if isinstance(self.source, Sequence):
            rank, world = self.context.rank, self.context.world_size
            mine = self.source[rank : len(self) * world : world]
            return iter(mine[start:])
        return islice(iter(self.source), start, None)


class ResumableBatchSampler(Sampler[list[int]]):
    """The batch sampler of a training DataLoader: one rank's batches of one epoch, from any batch on.

    Position ``p`` of an epoch's order holds ``permutation(p)`` (or ``p`` unshuffled); rank r takes positions
    r, r + world, r + 2 * world, ... as DistributedSampler deals them, so ranks never share an item, and every
    rank has the same number of batches (DDP needs it). The trainer binds the run's seed and process group
    (`bind`) and places it at an epoch and batch before each epoch (`set_position`), as DistributedSampler's
    ``set_epoch``; so a resumable loader belongs to one trainer.
    """

    def __init__(self, count: int, batch_size: int, *, shuffle: bool = True, drop_last: bool = True) -> None:
        self.count, self.batch_size, self.shuffle, self.drop_last = count, batch_size, shuffle, drop_last
        self.seed, self.context = 0, DistributedContext()
        self.epoch, self.start = 0, 0

    def bind(self, seed: int, context: DistributedContext) -> None:
        """Deal the order of `seed` to the ranks of `context`."""
        self.seed, self.context = seed, context

    def set_position(self, epoch: int, start: int) -> None:
        """Iterate `epoch` from batch `start` on."""
        self.epoch, self.start = epoch, start

    @property
    def batches_per_epoch(self) -> int:
        """Batches this rank sees in a whole epoch."""
        per_rank = self.count // self.context.world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        permutation = IndexPermutation(self.count, (self.seed, self.epoch)) if self.shuffle else None
        world, rank, size = self.context.world_size, self.context.rank, self.batch_size
        per_rank = self.count // world
        return (
            (positions if permutation is None else permutation(positions)).tolist()
            for batch in range(self.start, self.batches_per_epoch)
            for positions in [np.arange(batch * size, min((batch + 1) * size, per_rank)) * world + rank]
        )


def resumable_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = True,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    worker_init_fn: Callable[[int], None] | None = None,
) -> DataLoader:
    """A training DataLoader over a map-style `dataset` whose order resumes exactly (see the module's doc)."""
    return DataLoader(
        dataset,
        batch_sampler=ResumableBatchSampler(len(dataset), batch_size, shuffle=shuffle, drop_last=drop_last),
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=worker_init_fn,
        generator=torch.Generator(),
    )


def _resumable(source: Iterable[Batch]) -> DataLoader | None:
    """`source` itself when `resumable_loader` built it; a plain map-style DataLoader made into one; else None."""
    if isinstance(source, DataLoader) and isinstance(source.batch_sampler, ResumableBatchSampler):
        return source
    if not _rebuildable(source):
        return None
    sampler = source.sampler
    return resumable_loader(
        source.dataset,
        source.batch_size,
        shuffle=isinstance(sampler, RandomSampler) or bool(getattr(sampler, "shuffle", False)),
        drop_last=source.drop_last,
        collate_fn=source.collate_fn,
        num_workers=source.num_workers,
        pin_memory=source.pin_memory,
        worker_init_fn=source.worker_init_fn,
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
