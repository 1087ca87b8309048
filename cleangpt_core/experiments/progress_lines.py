"""Plain progress lines of a training run, for a log rather than a terminal.

On a terminal the trainer draws a tqdm bar; piped (``cleangpt train > log 2>&1``) the bar is off, and without
these lines the log would hold the run's first line and then nothing until the end. `ProgressLines` is an
ordinary observer of training events: a line every ``trainer.log_interval`` optimizer steps and one per
evaluation, only when no bar is drawn and only on the main process.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


class ProgressLines:
    """Writes a line through `echo` every log_interval steps and after each evaluation, when no bar is shown."""

    def __init__(self, echo: Callable[[str], None], terminal: bool | None = None) -> None:
        self.echo = echo
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self._started = time.perf_counter()

    def _wanted(self, trainer: Any) -> bool:
        bar = trainer.options.progress_bar
        return trainer.context.is_main and not (bar if bar is not None else self.terminal)

    def on_train_begin(self, trainer: Any) -> None:
        self._started = time.perf_counter()

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if not self._wanted(trainer) or step % trainer.options.log_interval:
            return
        total = trainer.total_steps()
        of = f"/{total:,}" if total is not None else ""
        self.echo(
            f"step {step:,}{of}: loss {metrics['loss']:.4f}, lr {metrics['lr']:.3g}, "
            f"{metrics['tokens_per_s']:,.0f} tokens/s, {time.perf_counter() - self._started:,.0f} s"
        )

    def on_evaluation_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if self._wanted(trainer):
            self.echo(f"step {step:,}: validation loss {metrics['loss']:.4f} over {metrics['tokens']:,} tokens")
