"""GPT-2's tanh-approximated GELU computed as x * sigmoid(z): the same values and gradients as F.gelu."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cleangpt_core.kernels import fixed, gelu_tanh
from cleangpt_core.kernels.gelu import TanhGeluBySigmoid


def test_values_and_gradients_equal_f_gelu_tanh_in_float32():
    x = (torch.randn(64, 96, generator=torch.Generator().manual_seed(0)) * 4).requires_grad_(True)
    reference = x.detach().clone().requires_grad_(True)
    grad = torch.randn(64, 96, generator=torch.Generator().manual_seed(1))
    with fixed(gelu="sigmoid"):
        gelu_tanh(x).backward(grad)
        values = gelu_tanh(x.detach())
    F.gelu(reference, approximate="tanh").backward(grad)
    torch.testing.assert_close(values, F.gelu(reference.detach(), approximate="tanh"))
    torch.testing.assert_close(x.grad, reference.grad)


def test_the_backward_is_the_derivative():
    x = torch.linspace(-6, 6, 97, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(TanhGeluBySigmoid.apply, (x,))


def test_other_dtypes_keep_f_gelu():
    x = torch.randn(8, 8).to(torch.bfloat16)
    with fixed(gelu="sigmoid"):  # float32 only: in bf16 each step of the cubic would round
        assert torch.equal(gelu_tanh(x), F.gelu(x, approximate="tanh"))
