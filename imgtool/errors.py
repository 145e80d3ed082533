"""One exception hierarchy for imgtool.

Every error that a user can cause (a bad file, a bad option, a model that cannot be
loaded) is an :class:`ImgtoolError`. The CLI turns these into one line on stderr and
an exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ImgtoolError(Exception):
    """Base class of every error imgtool raises on purpose.

    Attributes
    ----------
    exit_code : int
        The process exit code the CLI uses for this error.
    """

    exit_code: int = 1


class UsageError(ImgtoolError):
    """The call itself is wrong: unknown option, bad option value, missing argument."""

    exit_code = 2


class InputError(ImgtoolError):
    """An input file is missing, unreadable, corrupt, too large or too small."""


class OutputError(ImgtoolError):
    """An output folder or file cannot be written."""


class RegistrationError(ImgtoolError):
    """Registration was asked for something it cannot do (not a failed alignment:
    a failed alignment is a result with ``status == "failed"``)."""


class ModelError(ImgtoolError):
    """Model weights or their card are missing, corrupt or do not match."""
