"""Tokens/s and step time are timed against a synchronised device, on logging steps only.

No GPU is lent to these tests, so the device's synchronisation is played by a stand-in that runs behind the
host as a GPU does: each step it is handed takes it `LAG` seconds, done when the host waits for it. A timing
that read the clock without waiting would miss that time (the per-step timing of earlier releases did).
"""

from __future__ import annotations

import time

import pytest
import torch

import cleangpt_core.trainers.simple_trainer as simple_trainer
import cleangpt_core.trainers.throughput as throughput
from cleangpt_core.testing.trainer import build_tiny_trainer

LAG = 0.05  # seconds of device work per step
INTERVAL, STEPS = 4, 8


class LaggingDevice:
    """A device that finishes its queued steps only when the host synchronises it; a callback of the trainer."""

    def __init__(self) -> None:
        self.step = 0  # the step the host is at
        self.queued = 0  # steps handed to the device since it was last synchronised
        self.synchronised_at: list[int] = []
        self.figures: dict[int, dict[str, float]] = {}

    def synchronize(self, device: torch.device) -> None:
        time.sleep(self.queued * LAG)
        self.queued = 0
        self.synchronised_at.append(self.step)

    def on_step_begin(self, step: int) -> None:
        self.step = step
        self.queued += 1

    def on_step_end(self, step: int, metrics: dict) -> None:
        if step % INTERVAL == 0:  # reading them on other steps would make the trainer wait for the device
            self.figures[step] = {key: metrics[key] for key in ("tokens_per_s", "step_time_s")}


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> LaggingDevice:
    lagging = LaggingDevice()
    monkeypatch.setattr(throughput, "synchronize", lagging.synchronize)
    monkeypatch.setattr(simple_trainer, "synchronize", lagging.synchronize)
    return lagging


def test_a_logging_step_times_the_steps_since_the_last_with_the_device_finished(device):
    trainer = build_tiny_trainer("simple", callbacks=[device], max_steps=STEPS, log_interval=INTERVAL)
    trainer.train()
    assert sorted(device.figures) == [INTERVAL, STEPS]
    tokens_per_step = 8 * 16  # batch 8 of 16 tokens
    for figures in device.figures.values():
        assert figures["step_time_s"] >= LAG  # the device's time is in it
        assert figures["tokens_per_s"] == pytest.approx(tokens_per_step / figures["step_time_s"], rel=1e-6)


def test_quiet_steps_never_wait_for_the_device(device):
    build_tiny_trainer("simple", callbacks=[device], max_steps=STEPS, log_interval=INTERVAL).train()
    assert set(device.synchronised_at) == {0, INTERVAL, STEPS}  # the start, then the logging steps only
