"""`DeviceChecks`, the CPU's stand-in for a GPU: it tells the host and the training device apart and records
what a GPU would mind (syncs, float64, host tensors in collectives, mixed placements, unpinned async copies)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from cleangpt_core.distributed.process_group import DistributedContext, all_reduce_sum
from cleangpt_core.testing.device_checks import DeviceChecks


def test_tensors_are_on_the_host_until_moved_to_the_training_device():
    with DeviceChecks() as checks:
        host = torch.ones(3)
        moved = torch.ones(3).to(checks.device)
        made_there = torch.zeros(2, device=checks.device)
        like_a_device_tensor = torch.arange(3, device=moved.device)  # x.device reads "cpu" on cpu:0
        computed = moved * 2 + 1
    assert not checks.on_device(host)
    assert all(checks.on_device(t) for t in (moved, made_there, like_a_device_tensor, computed))


def test_reading_a_device_value_on_the_host_is_a_sync_and_a_host_value_is_not():
    with DeviceChecks() as checks:
        checks.on_step_begin(1)
        loss = torch.ones(3, device=checks.device).sum()
        loss.item(), float(loss), bool(loss > 0), loss.tolist(), loss.cpu()
        checks.on_step_begin(2)
        torch.ones(3).sum().item(), torch.ones(2).tolist()
    assert [site.split(" at ")[0] for site in checks.syncs_in(1)] == ["item", "item", "item", "tolist", "cpu"]
    assert checks.syncs_in(2) == []


def test_float64_is_recorded_on_the_device_only():
    with DeviceChecks() as checks:
        torch.zeros(2, dtype=torch.float64)
        torch.zeros(2, device=checks.device).double()
    assert len(checks.float64) == 1 and "test_device_checks.py" in checks.float64[0]


def test_an_async_copy_from_unpinned_memory_and_mixed_placements_are_faults():
    with DeviceChecks() as checks:
        device_tensor = torch.ones(3).to(checks.device, non_blocking=True)
        device_tensor + torch.ones(3)  # a host tensor with a device tensor: CUDA refuses
        device_tensor + torch.tensor(2.0)  # a 0-dim host tensor is a scalar: CUDA takes it
    assert [fault.split(" at ")[0] for fault in checks.faults] == [
        "non_blocking copy from unpinned host memory",
        "add mixes host and device tensors",
    ]


@pytest.fixture
def gloo_group():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_a_collective_of_cleangpt_on_a_host_tensor_is_a_fault(gloo_group):
    # one process, counted as two so the helper really calls the collective
    context = DistributedContext(rank=0, world_size=2)
    with DeviceChecks() as checks:
        all_reduce_sum(torch.ones(2, device=checks.device), context)
        assert checks.faults == []
        all_reduce_sum(torch.ones(2), context)
    assert len(checks.faults) == 1 and checks.faults[0].startswith("collective all_reduce on a host tensor")
