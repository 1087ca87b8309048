"""A training step's numbers stay on the device until someone reads them, so a GPU never waits for the host.

Reading a value of a tensor on a GPU (``.item()``, ``float()``) makes the host wait until the device has
finished everything queued before it; done every step, the GPU idles while the host prepares the next step.
So the loop keeps each step's loss on the device (`PendingLosses`) and reads them all back at once on the
steps that need them: logging steps (every ``log_interval`` and the last), evaluations and checkpoints.
A step's metrics (`StepMetrics`) are an ordinary dict whose device values are read on first access, so a
receiver of ``step_end`` that reads ``metrics["loss"]`` on every step still gets its float (and pays a sync).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from cleangpt_core.distributed.process_group import DistributedContext, all_reduce_sum


def is_logging_step(trainer: Any, step: int) -> bool:
    """Whether `step` is one the metrics are written and reported on: every ``log_interval`` and the last."""
    return step % trainer.options.log_interval == 0 or step == trainer.total_steps()


class PendingLosses:
    """The loss sums of the steps since the last read, on the device; read back in one collective and one copy."""

    def __init__(self, context: DistributedContext) -> None:
        self.context = context
        self._sums: list[torch.Tensor] = []  # each step's sum of token losses on this rank, 0-dim, on the device
        self._tokens: list[int] = []  # each step's predicted tokens on this rank

    def __len__(self) -> int:
        return len(self._sums)

    def add(self, loss_sum: torch.Tensor, tokens: int) -> None:
        """Keep one step's sum of token losses (a 0-dim device tensor) and its token count."""
        self._sums.append(loss_sum)
        self._tokens.append(tokens)

    def read(self) -> list[float]:
        """The mean loss per token of every pending step, over all processes, in step order; clears them."""
        if not self._sums:
            return []
        sums = torch.stack(self._sums).float()
        tokens = torch.tensor(self._tokens, dtype=torch.float32, device=sums.device)
        totals = all_reduce_sum(torch.stack([sums, tokens]), self.context).tolist()
        self._sums, self._tokens = [], []
        return [loss / (count or 1.0) for loss, count in zip(*totals, strict=True)]


class StepMetrics(dict):
    """A step's metrics whose device values are read (and cached) when first asked for, by any dict access.

    `pending` maps a key to a function that returns its float; until read, the key holds None in the dict
    itself. Every reading path (``[]``, ``get``, ``items``, ``values``, iteration, ``dict(m)``, ``{**m}``,
    ``json.dumps``) resolves first, so receivers see plain floats.
    """

    def __init__(self, values: dict[str, Any], pending: dict[str, Callable[[], float]]) -> None:
        super().__init__(values, **dict.fromkeys(pending))
        self._pending = dict(pending)

    def _resolve(self) -> None:
        while self._pending:
            key, read = self._pending.popitem()
            dict.__setitem__(self, key, read())

    def __getitem__(self, key: str) -> Any:
        self._resolve()
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """`dict.get`, resolved."""
        self._resolve()
        return super().get(key, default)

    def items(self) -> Any:
        """`dict.items`, resolved."""
        self._resolve()
        return super().items()

    def values(self) -> Any:
        """`dict.values`, resolved."""
        self._resolve()
        return super().values()

    def __iter__(self) -> Iterator[str]:  # defined so dict(m) and {**m} go through __getitem__
        return super().__iter__()

    def copy(self) -> dict[str, Any]:
        """A plain dict of the resolved values."""
        self._resolve()
        return dict(super().items())

    def __repr__(self) -> str:
        self._resolve()
        return super().__repr__()
