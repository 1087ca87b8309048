"""The trainer's batch order: a permutation keyed by (seed, epoch), computed per index, dealt to ranks."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader

from cleangpt_core.data.windows import RandomWindowDataset
from cleangpt_core.distributed.process_group import DistributedContext
from cleangpt_core.trainers.batches import EpochBatches, IndexPermutation


@pytest.mark.parametrize("count", [1, 2, 3, 7, 64, 1000, 65_537])
def test_an_index_permutation_visits_every_index_once(count):
    values = IndexPermutation(count, (1337, 0))(np.arange(count))
    assert sorted(values.tolist()) == list(range(count))


def test_the_permutation_is_a_function_of_its_key_and_cheap_for_any_size():
    a, b = IndexPermutation(1000, (5, 1)), IndexPermutation(1000, (5, 1))
    assert np.array_equal(a(np.arange(1000)), b(np.arange(1000)))
    assert not np.array_equal(a(np.arange(1000)), IndexPermutation(1000, (5, 2))(np.arange(1000)))
    huge = IndexPermutation(10**12, (5, 1))  # a trillion windows: nothing is materialised
    values = huge(np.arange(10**12 - 64, 10**12))
    assert len(set(values.tolist())) == 64 and values.max() < 10**12
    assert np.array_equal(huge(np.arange(10**12 - 64, 10**12)), values)


def test_ranks_read_disjoint_windows_that_together_make_the_single_process_epoch():
    tokens = np.arange(403, dtype=np.uint16)
    loader = DataLoader(RandomWindowDataset(tokens, 8), batch_size=6, shuffle=True, drop_last=True)

    def starts(context, epoch=0, start=0):
        batches = EpochBatches(loader, seed=3, context=context).epoch(epoch, start)
        return [batch["input_ids"][:, 0].tolist() for batch in batches]

    single = [s for batch in starts(DistributedContext()) for s in batch]
    ranks = [[s for batch in starts(DistributedContext(rank=r, world_size=2)) for s in batch] for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1])
    assert len(single) == len(set(single)) == 396 // 6 * 6
    assert set(ranks[0]) | set(ranks[1]) <= set(range(396))
    assert (
        starts(DistributedContext(rank=1, world_size=2), start=4)
        == starts(DistributedContext(rank=1, world_size=2))[4:]
    )
    assert starts(DistributedContext(), epoch=1) != starts(DistributedContext())
