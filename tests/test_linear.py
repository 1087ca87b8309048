"""`Linear`: an `nn.Linear` whose large float32 CPU products may run on oneDNN, with the same results and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.kernels import linear, onednn_linear
from cleangpt_core.kernels.choices import fixed_kernel
from cleangpt_core.kernels.cpu_gemm import ONEDNN_AVAILABLE, ONEDNN_MIN_MACS, onednn_applies
from cleangpt_core.model import Linear, get_model

needs_onednn = pytest.mark.skipif(not ONEDNN_AVAILABLE, reason="this PyTorch build has no oneDNN")


@pytest.fixture(autouse=True)
def onednn_whatever_the_cpu():
    """These tests exercise the oneDNN path, which by default only hosts where it measured faster take."""
    with onednn_linear(True):
        yield


def _gradients(function, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, seed: int):
    """Output and the gradients of x, weight and bias for a random upstream gradient."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight) + ((bias,) if bias is not None else ())]
    out = function(*leaves) if bias is not None else function(*leaves, None)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    out.backward(upstream)
    return out.detach(), [leaf.grad for leaf in leaves]


@needs_onednn
@pytest.mark.parametrize("shape", [(12, 64, 128), (768, 128), (3, 4, 200, 128)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_onednn_products_match_f_linear_forward_and_backward(shape: tuple[int, ...], with_bias: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator)
    weight = torch.randn(384, 128, generator=generator) * 0.05
    bias = torch.randn(384, generator=generator) if with_bias else None
    assert onednn_applies(x, weight)  # the shapes are large enough: this test exercises the oneDNN path

    ours, our_grads = _gradients(linear, x, weight, bias, seed=1)
    reference, reference_grads = _gradients(F.linear, x, weight, bias, seed=1)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for got, expected in zip(our_grads, reference_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@needs_onednn
def test_a_non_contiguous_upstream_gradient_is_handled() -> None:
    """SwiGLU splits one projection in two: the gradient that reaches the layer is not contiguous."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(12, 64, 128, generator=generator)
    weight = torch.randn(512, 128, generator=generator) * 0.05

    def gated(function):
        def run(x, weight, bias):
            gate, up = function(x, weight, bias).chunk(2, dim=-1)
            return F.silu(gate) * up

        return run

    _, ours = _gradients(gated(linear), x, weight, None, seed=3)
    _, reference = _gradients(gated(F.linear), x, weight, None, seed=3)
    for got, expected in zip(ours, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_small_products_low_precision_and_autocast_stay_on_f_linear() -> None:
    """oneDNN costs more per call than MKL: a one-token product stays on `F.linear`, as do other dtypes."""
    weight = torch.randn(384, 128)
    one_token = torch.randn(1, 1, 128)
    assert one_token.numel() * weight.size(0) < ONEDNN_MIN_MACS
    assert not onednn_applies(one_token, weight)
    batch = torch.randn(12, 64, 128)
    assert not onednn_applies(batch.double(), weight.double())
    assert not onednn_applies(batch.bfloat16(), weight.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn_applies(batch, weight)
        assert Linear(128, 384)(batch).dtype == torch.bfloat16  # autocast still applies to the layer


def test_linear_is_an_nn_linear_computed_by_linear() -> None:
    """Checkpoints, Hugging Face interop and `isinstance` checks see a plain `nn.Linear`."""
    layer = Linear(128, 384)
    assert isinstance(layer, nn.Linear)
    assert set(layer.state_dict()) == {"weight", "bias"}
    x = torch.randn(12, 64, 128)
    with torch.no_grad():
        assert torch.equal(layer(x), linear(x, layer.weight, layer.bias))
    model = get_model("Llama", vocab_size=65, n_layer=1, n_head=2, n_embd=32, block_size=16)
    assert isinstance(model.lm_head, Linear)
    assert all(isinstance(m, Linear) for name, m in model.named_modules() if name.endswith(("c_attn", "c_fc")))


@needs_onednn
def test_training_through_onednn_is_deterministic() -> None:
    """Bitwise resume needs the same numbers every time: two identical runs give identical weights."""

    def train() -> torch.Tensor:
        torch.manual_seed(0)
        model = get_model("Llama", vocab_size=65, n_layer=2, n_head=4, n_embd=128, block_size=64)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        tokens = torch.randint(0, 65, (12, 64), generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            optimizer.zero_grad()
            model(tokens, labels=tokens)["loss"].backward()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(train(), train())


@pytest.mark.slow
def test_a_compiled_model_at_onednn_sizes_trains_like_the_eager_one() -> None:
    """`trainer.compile`: torch.compile picks its own GEMMs, so `Linear` leaves its products to it."""
    torch.manual_seed(0)
    eager = get_model("Llama", vocab_size=65, n_layer=1, n_head=4, n_embd=128, block_size=64)
    compiled = get_model("Llama", vocab_size=65, n_layer=1, n_head=4, n_embd=128, block_size=64)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    tokens = torch.randint(0, 65, (12, 64), generator=torch.Generator().manual_seed(1))
    assert onednn_applies(torch.empty(12, 64, 128), eager.lm_head.weight.new_empty(384, 128))
    losses = [model(tokens, labels=tokens)["loss"] for model in (eager, compiled)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
    for ours, reference in zip(compiled.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-4, atol=1e-5)


@needs_onednn
def test_onednn_can_be_turned_off_for_a_block() -> None:
    """`onednn_linear(False)` gives MKL's results, bit for bit, and the enclosing choice returns after the block."""
    x, weight = torch.randn(12, 64, 128), torch.randn(384, 128)
    with onednn_linear(False):
        assert fixed_kernel("linear") == "plain"
        assert torch.equal(linear(x, weight), F.linear(x, weight))
    assert fixed_kernel("linear") == "onednn"


@needs_onednn
def test_one_switch_wraps_every_step_of_a_loop() -> None:
    switch = onednn_linear(False)
    x, weight = torch.randn(12, 64, 128), torch.randn(384, 128)
    for _ in range(2):
        with switch:
            assert fixed_kernel("linear") == "plain"
            assert torch.equal(linear(x, weight), F.linear(x, weight))
        assert fixed_kernel("linear") == "onednn"
