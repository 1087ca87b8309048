"""The progress bar of tokenization: source bytes read (with MB/s), documents and tokens so far.

`cleangpt prepare-data` and the implicit preparation inside `cleangpt train` show the same bar. tqdm
draws it on stderr, and only when stderr is a terminal (or when asked), so logs and tests stay clean.
"""

from __future__ import annotations

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
