"""The order in which a trainer sees batches: a pure function of (seed, epoch), sharded by rank, resumable.

A trainer does not iterate the caller's DataLoader as it is: a DataLoader shuffles with the global RNG and
cannot start in the middle of an epoch, so a resumed run would see other batches than a run that never
stopped. For a map-style dataset the loader is rebuilt around our own batch order (same dataset, batch
size, collate function and workers): a permutation drawn from a generator seeded by (seed, epoch), dealt to
ranks the way DistributedSampler deals it, and sliced to start at any batch. A list of ready-made batches is
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

import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from cleangpt_core.trainers.distributed import DistributedContext

Batch = dict[str, Any]


class EpochBatches:
    """The batches of every epoch, for one rank, from any position."""

    def __init__(self, source: Iterable[Batch], *, seed: int, context: DistributedContext) -> None:
        self.source = source
        self.seed = seed
        self.context = context
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

    def _order(self, epoch: int) -> list[list[int]]:
        """Index lists of this rank's batches, all ranks having the same number (DDP needs equal steps)."""
        size, count = self.source.batch_size, len(self.source.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            indices = torch.randperm(count, generator=generator).tolist()
        else:
            indices = list(range(count))
        world = self.context.world_size
        mine = indices[self.context.rank : (count // world) * world : world]
        batches = [mine[i : i + size] for i in range(0, len(mine), size)]
        return batches[: len(self)]

    def _loader(self, epoch: int, start: int) -> DataLoader:
        source = self.source
        return DataLoader(
            source.dataset,
            batch_sampler=self._order(epoch)[start:],
            collate_fn=source.collate_fn,
            num_workers=source.num_workers,
            pin_memory=source.pin_memory,
            worker_init_fn=source.worker_init_fn,
            # the loader's own generator: iterating must not draw from the global RNG (dropout uses it)
            generator=torch.Generator().manual_seed(self.seed + epoch),
        )


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
