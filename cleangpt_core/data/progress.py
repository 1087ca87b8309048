"""Progress of long work: tokenization's bar, and evaluation's bar or periodic line.

`cleangpt prepare-data` and the implicit preparation inside `cleangpt train` show the same tokenization bar.
tqdm draws it on stderr, and only when stderr is a terminal (or when asked), so logs and tests stay clean.
Evaluation (`EvaluationProgress`) draws a bar on a terminal and writes a plain line now and then elsewhere.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from tqdm.auto import tqdm


class TokenizationProgress:
    """A bar over source bytes; the postfix counts documents and tokens."""

    def __init__(self, description: str, total_bytes: int | None = None, enabled: bool | None = None) -> None:
        # enabled None: draw only on a terminal (tqdm's disable=None)
        self._bar = tqdm(
            total=total_bytes,
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,  # so the rate reads in MB/s
            disable=None if enabled is None else not enabled,
            dynamic_ncols=True,
            leave=True,
        )
        self.documents = 0
        self.tokens = 0

    def update(self, num_bytes: int, documents: int, tokens: int) -> None:
        """Count one tokenized piece of the source."""
        self.documents += documents
        self.tokens += tokens
        self._bar.set_postfix_str(f"{self.documents:,} docs, {self.tokens:,} tokens", refresh=False)
        self._bar.update(num_bytes)

    def close(self) -> None:
        """Finish the bar (its last line stays on screen)."""
        self._bar.close()

    def __enter__(self) -> TokenizationProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class EvaluationProgress:
    """Progress of an evaluation, counted in batches and tokens: where it is, as it goes.

    On a terminal, a tqdm bar on stderr that appears only once the work has taken `delay_s` (a short
    evaluation draws nothing). Elsewhere (a piped log), a plain line on stderr every `every_s` seconds, so
    `cleangpt train > log 2>&1` shows that a long evaluation is moving, and how fast.
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        every_s: float = 30.0,
        delay_s: float = 2.0,
        terminal: bool | None = None,
        enabled: bool = True,
    ) -> None:
        # terminal None: a bar when stderr is a terminal, plain lines otherwise; enabled False: neither
        self.description = description
        self.total = total
        self.every_s = every_s
        self.done = 0
        self.tokens = 0
        self.enabled = enabled
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar = (
            tqdm(total=total, desc=description, unit="batch", delay=delay_s, dynamic_ncols=True, leave=False)
            if terminal and enabled
            else None
        )
        self._started = self._last_line = time.perf_counter()

    def update(self, batches: int = 1, tokens: int = 0) -> None:
        """Count `batches` more done, scoring `tokens` more tokens."""
        self.done += batches
        self.tokens += tokens
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.tokens:,} tokens", refresh=False)
            self._bar.update(batches)
            return
        now = time.perf_counter()
        if self.enabled and now - self._last_line >= self.every_s:
            self._last_line = now
            print(self.line(now - self._started), file=sys.stderr, flush=True)

    def line(self, elapsed: float) -> str:
        """The plain line: how far, how fast, and (with a total) how long to go."""
        of = f"/{self.total:,}" if self.total is not None else ""
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        left = ""
        if self.total and self.done:
            left = f", about {elapsed * (self.total - self.done) / self.done:,.0f} s left"
        return f"{self.description}: {self.done:,}{of} batches, {self.tokens:,} tokens, {rate:,.0f} tokens/s{left}"

    def close(self) -> None:
        """Remove the bar, if one was drawn."""
        if self._bar is not None:
            self._bar.close()
