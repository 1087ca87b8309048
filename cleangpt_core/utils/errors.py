"""Errors a user of the data pipeline can cause (an empty corpus, an unreadable file, an unknown split)."""

from __future__ import annotations

from cleangpt_core.errors import CleanGPTError


class DataError(CleanGPTError, ValueError):
    """A corpus or dataset cannot be loaded or is unusable as given; the message says which and why."""
