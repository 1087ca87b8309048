"""Exception types for errors a user can cause.

The CLI turns every `CleanGPTError` into one line and a non-zero exit; library users catch them by type.
Each message names the input that was wrong and, where there is one, what to do instead.
"""

from __future__ import annotations


class CleanGPTError(Exception):
    """Base class of every error cleanGPT raises on purpose."""


class ConfigError(CleanGPTError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class UnknownComponentError(CleanGPTError, KeyError):
    """No registered component of that kind has that name."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(CleanGPTError, LookupError):
    """Two third-party distributions register the same name for one kind."""


class PluginError(CleanGPTError):
    """A plugin failed to load or answer a hook (raised only in strict mode)."""


class IncompatiblePluginError(PluginError):
    """A plugin was written for a plugin API version this core does not provide."""


class TokenizerError(CleanGPTError, ValueError):
    """A tokenizer was used in a way it cannot serve: unfitted, unknown input, bad ids, bad arguments."""


class UnknownTokenError(TokenizerError):
    """The text holds a symbol outside the vocabulary and the tokenizer's policy is to refuse it.

    `character` and `position` (its offset in the text, in characters) let a caller, such as the server,
    name them in its own words (None where unknown: an error unpickled from another process has only its message).
    """

    def __init__(self, message: str, *, character: str | None = None, position: int | None = None) -> None:
        super().__init__(message)
        self.character = character
        self.position = position


class TokenizerLoadError(TokenizerError):
    """A tokenizer directory is missing, incomplete or corrupt."""


class DataError(CleanGPTError, ValueError):
    """A corpus or dataset cannot be loaded or is unusable as given; the message says which and why."""


class SequenceTooLongError(CleanGPTError, ValueError):
    """An input is longer than the model's context (block_size)."""


class GenerationError(CleanGPTError, ValueError):
    """A generation request that cannot be served (an empty prompt, a bad batch)."""


class HFConversionError(CleanGPTError, ValueError):
    """A Hugging Face checkpoint that Vanilla cannot represent, or that is incomplete."""


class CheckpointError(CleanGPTError, FileNotFoundError):
    """A path that is not a model directory, checkpoint or run directory, or one that is incomplete."""


class CheckpointWriteError(CleanGPTError, OSError):
    """A checkpoint could not be written (a full disk, a permission); the previous one is still intact."""


class RunLockedError(CleanGPTError):
    """Another process is training into the run directory (the message names it)."""


class TrainingDivergedError(CleanGPTError):
    """The loss became NaN or infinite; training stopped without saving the broken weights."""


class ScaffoldError(CleanGPTError):
    """A plugin project cannot be written: a bad name, a name already taken, or an existing folder."""


class InspectionError(CleanGPTError, ValueError):
    """A capture or inspection request that names no part of the model, or a patch that does not fit it."""
