"""User-facing errors.

A `UserError` is a problem with what the user gave us (a path, an option, a file). The CLI prints
its message without a traceback and exits with code 2. Library callers can catch it like any error.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message says what was wrong, where, and how to fix it."""

    exit_code = 2


class CheckpointError(UserError):
    """A checkpoint file that is missing, truncated, foreign or of the wrong architecture."""


class DataError(UserError):
    """A dataset or image folder that cannot be used for training or evaluation."""
