"""Errors a tokenizer user can cause (torch-free, so the CLI can catch them without importing a tokenizer)."""

from __future__ import annotations

from cleangpt_core.errors import CleanGPTError


class TokenizerError(CleanGPTError, ValueError):
    """A tokenizer was used in a way it cannot serve: unfitted, unknown input, bad ids, bad arguments."""


class UnknownTokenError(TokenizerError):
    """The text holds a symbol outside the vocabulary and the tokenizer's policy is to refuse it."""


class TokenizerLoadError(TokenizerError):
    """A tokenizer directory is missing, incomplete or corrupt."""
