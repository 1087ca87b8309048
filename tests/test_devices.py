"""Choosing the device: under torchrun each rank's CUDA device is the GPU of its LOCAL_RANK, whatever was asked
for (``cuda`` has no index for ``set_device``; ``cuda:0`` would put every rank on the first GPU)."""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.distributed.devices import rank_device


@pytest.mark.parametrize(
    ("asked", "local_rank", "expected"),
    [("cuda", "1", "cuda:1"), ("cuda:0", "3", "cuda:3"), ("cuda:2", "0", "cuda:0"), ("cuda:1", None, "cuda:1")],
)
def test_under_torchrun_a_cuda_device_is_the_gpu_of_the_local_rank(monkeypatch, asked, local_rank, expected):
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert str(rank_device(torch.device(asked))) == expected


def test_other_devices_are_left_as_they_are_under_torchrun(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device(torch.device("cpu")) == torch.device("cpu")
    assert rank_device(torch.device("mps")) == torch.device("mps")
