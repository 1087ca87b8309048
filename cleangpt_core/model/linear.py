"""The linear layer every part is built from: `nn.Linear`, computed by the host's chosen kernel.

`Linear` is an `nn.Linear`: same parameters, names, initialisation and state dict, so checkpoints, Hugging
Face interop and `isinstance(module, nn.Linear)` checks see no difference. Its product is
`cleangpt_core.kernels.linear`, which on a CPU may run a float32 product on oneDNN rather than MKL where that
measured faster; results agree with `F.linear` to float32 rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from cleangpt_core.kernels import linear


class Linear(nn.Linear):
    """`nn.Linear` computed by `cleangpt_core.kernels.linear`: the layer the built-in parts use, and plugins may use."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
