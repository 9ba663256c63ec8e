"""The root of 留痕's error tree.

Every error a user can meet is a :class:`LiuhenError`: it names what went wrong and what
to do next, and carries the process exit code the command line uses. Library errors
(boto, SQLAlchemy, OS) are kept as ``__cause__`` so ``--verbose`` can show them.

This module lives in ``config`` because ``config`` is the one package every other
package may import; it imports nothing of ours.
"""

from __future__ import annotations

# Exit codes, after BSD sysexits where one fits, so shell scripts and systemd can react.
EXIT_OK = 0
EXIT_FAILED_CHECK = 1  # a verification ran and found problems
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # a job finished, but some inputs were quarantined or rejected
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_IOERR = 74
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78


class LiuhenError(Exception):
    """Base of every error 留痕 raises on purpose.

    ``message`` says what went wrong (naming the file, key or object); ``hint`` says
    what to do next.
    """

    exit_code: int = EXIT_SOFTWARE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(LiuhenError):
    """A configuration file or value is invalid or missing."""

    exit_code = EXIT_CONFIG


class UnavailableError(LiuhenError):
    """A service (catalog database, object store) cannot be reached right now."""

    exit_code = EXIT_UNAVAILABLE
