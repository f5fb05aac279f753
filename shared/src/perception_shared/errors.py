"""Errors a user can fix. The CLI prints them in one line, without a traceback.

Every message names the file, key or value at fault and says what was expected.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, a config value, a command-line argument."""


class ConfigError(UserError, ValueError):
    """A config file or override has an unknown key, a wrong type or an invalid value."""


class DataError(UserError):
    """A data file or folder is missing, unreadable or malformed."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated or not a perception-lab checkpoint."""


class WeightsError(UserError):
    """A pretrained-weights file does not fit the model."""


class RunDirError(UserError):
    """The output directory cannot be created, written, or has too little free space."""
