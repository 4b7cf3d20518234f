"""The project's own error classes: what a user can fix, apart from what is a bug.

Entry points print a :class:`UserError` as one paragraph and exit with status 2; every other exception
is an internal error and keeps its traceback. Raise the most specific class that fits, and say in the
message which file or key is wrong and what it should be.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can correct (a file, a path, an option). Shown without a traceback."""


class ConfigError(UserError, ValueError):
    """An option or a combination of options is invalid; the message names the key."""


class ArtifactError(UserError):
    """A file written by this project (or claiming to be) cannot be used: damaged, foreign or mismatched."""


class SelectionError(ArtifactError):
    """A selection file is damaged or was made from other data than this run's."""


class RunDirectoryError(UserError):
    """A run directory is in use by another process, or its stored config differs from this run's."""
