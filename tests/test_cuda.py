"""Checks only a CUDA GPU can make (skipped without one): `benchmarks/gpu_check.py` runs them with ``-m cuda``.

The CPU stands in for the GPU everywhere else (tests/test_gpu_readiness.py); here the GPU itself says whether a
quiet training step synchronizes (CUDA's sync debug mode raises on every synchronizing call), and whether the
compiled model is one graph on the device too.
"""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.distributed.devices import choose_device
from cleangpt_core.model import get_model
from cleangpt_core.testing.trainer import build_tiny_trainer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


class SyncGuard:
    """Makes every synchronizing CUDA call raise during the steps that neither log nor checkpoint."""

    def __init__(self, interval: int) -> None:
        self.interval = interval

    def on_step_begin(self, step: int) -> None:
        torch.cuda.set_sync_debug_mode("error" if step % self.interval else "default")

    def on_train_end(self) -> None:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("trainer", ["simple", "advanced"])
def test_a_quiet_training_step_never_makes_the_gpu_wait(trainer):
    options = {"grad_clip": 1.0, "mixed_precision": "bf16"} if trainer == "advanced" else {}
    try:
        built = build_tiny_trainer(
            trainer, device="cuda", max_steps=8, log_interval=4, callbacks=[SyncGuard(4)], **options
        )
        stats = built.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats["steps"] == 8 and len(stats["losses"]) == 8


def test_cuda_is_one_definite_gpu():
    assert choose_device("cuda") == torch.device("cuda", torch.cuda.current_device())


def test_the_compiled_model_is_one_graph_on_the_gpu_with_the_eager_loss():
    torch.manual_seed(0)
    model = get_model("Llama", vocab_size=64, n_layer=2, n_head=4, n_embd=64, block_size=32).cuda()
    tokens = torch.randint(0, 64, (2, 32), device="cuda")
    torch._dynamo.reset()
    assert torch._dynamo.explain(model)(tokens, labels=tokens).graph_break_count == 0
    eager = model(tokens, labels=tokens)["loss"]
    compiled = torch.compile(model, fullgraph=True)(tokens, labels=tokens)["loss"]
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
