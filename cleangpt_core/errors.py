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
