"""The progress lines of a training run, one format for ``train``, ``compare``, ``ablate``, ladders and tuning.

On a terminal the trainer draws a tqdm bar; piped (``cleangpt train > log 2>&1``) the bar is off, and without
these lines the log would hold the run's first line and then nothing until the end. `ProgressLines` is an
ordinary observer of training events, on the main process only:

- a step line every ``trainer.log_interval`` optimizer steps (or, with `lines_per_run`, at multiples of it
  chosen so a run writes about that many), when no bar is drawn::

      step 1,200/2,000: loss 1.8312, lr 1.07e-03, 40,113 tokens/s, 31 s

- a line for each evaluation, once, bar or no bar (written around the bar, which tqdm redraws under it)::

      step 1,250/2,000: validation loss 1.8604 ± 0.0061 over 51,200 tokens

A comparison's runs write the same lines, each after the run's position and name (``[2/6] gelu seed 1338:``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm


def step_of_total(trainer: Any, step: int) -> str:
    """``step 1,200/2,000`` (without the total when the run's length is unknown)."""
    total = trainer.total_steps()
    return f"step {step:,}" + (f"/{total:,}" if total is not None else "")


def evaluation_text(metrics: dict[str, Any]) -> str:
    """``validation loss 1.8604 ± 0.0061 over 51,200 tokens``: the loss, its standard error where known, and
    how many tokens it was measured on."""
    error = metrics.get("stderr")
    spread = f" ± {error:.4f}" if error is not None else ""
    over = f" over {metrics['tokens']:,} tokens" if metrics.get("tokens") is not None else ""
    return f"validation loss {metrics['loss']:.4f}{spread}{over}"


class ProgressLines:
    """Writes the progress lines of one run through `echo` (see the module)."""

    def __init__(
        self, echo: Callable[[str], None], terminal: bool | None = None, lines_per_run: int | None = None
    ) -> None:
        self.echo = echo
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.lines_per_run = lines_per_run
        self._started = time.perf_counter()

    def _bar_shown(self, trainer: Any) -> bool:
        bar = trainer.options.progress_bar
        return bool(bar if bar is not None else self.terminal)

    def every(self, trainer: Any) -> int:
        """Steps between two step lines: log_interval, or its multiple that gives about `lines_per_run` lines."""
        interval = trainer.options.log_interval
        total = trainer.total_steps()
        if self.lines_per_run is None or total is None:
            return interval
        return interval * max(1, math.ceil(total / (self.lines_per_run * interval)))

    def on_train_begin(self, trainer: Any) -> None:
        self._started = time.perf_counter()

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if not trainer.context.is_main or self._bar_shown(trainer) or step % self.every(trainer):
            return
        self.echo(
            f"{step_of_total(trainer, step)}: loss {metrics['loss']:.4f}, lr {metrics['lr']:.3g}, "
            f"{metrics['tokens_per_s']:,.0f} tokens/s, {time.perf_counter() - self._started:,.0f} s"
        )

    def on_evaluation_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if not trainer.context.is_main:
            return
        line = f"{step_of_total(trainer, step)}: {evaluation_text(metrics)}"
        if self._bar_shown(trainer):
            with tqdm.external_write_mode():  # clears the bar, and draws it again under the line
                self.echo(line)
        else:
            self.echo(line)
