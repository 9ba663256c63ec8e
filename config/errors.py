"""The root of 留痕's error tree.

Every error a user can meet is a :class:`LiuhenError`: it names what went wrong and what
to do next, and carries the process exit code the command line uses. Library errors
(boto, SQLAlchemy, OS) are kept as ``__cause__`` so ``--verbose`` can show them.

Commands never exit by themselves: they raise, and ``liuhen.cli.main`` turns every error
into its message and exit code, in one place. A command whose report already says what
went wrong (a check that found problems, rows refused) raises a :class:`Reported`, and
only its exit code is given.

This module lives in ``config`` because ``config`` is the one package every other
package may import; it imports nothing of ours but the catalog of messages
(``config.i18n``).
"""

from __future__ import annotations

from pathlib import Path

from config.i18n import _

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
    # The command has shown it to the user already (in its report, or as JSON): the
    # command line then adds no message of its own.
    reported: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # A config.message.Msg is said in the language of this moment (the command line,
        # the log) and kept as it is in ``kept`` and ``kept_hint``, for a process that
        # stores it for later readers of either language (ingest's journal).
        from config.message import Msg, shown

        self.kept: Msg | None = message if isinstance(message, Msg) else None
        self.kept_hint: Msg | None = hint if isinstance(hint, Msg) else None
        message = shown(message)
        hint = shown(hint) if hint is not None else None
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return _("{message} ({hint})").format(message=self.message, hint=self.hint)
        return self.message


class ConfigError(LiuhenError):
    """A configuration file or value is invalid or missing."""

    exit_code = EXIT_CONFIG


class DataDirMissing(ConfigError):
    """The data directory named (--data-dir, LIUHEN_HOME or the default) is not there:
    only ``liuhen init`` creates it."""

    def __init__(self, path: Path, *, exists: bool = False) -> None:
        message = (
            _("data directory {path} is not a directory")
            if exists
            else _("data directory {path} does not exist")
        )
        super().__init__(
            message.format(path=path),
            hint=_(
                "run `liuhen init --data-dir {path}` to create it, or check --data-dir and "
                "LIUHEN_HOME"
            ).format(path=path),
        )
        self.path = path


class UnavailableError(LiuhenError):
    """A service (catalog database, object store) cannot be reached right now: wait and
    try again; nothing was lost. The base of ``CatalogUnavailable`` and
    ``StoreUnavailable``."""

    exit_code = EXIT_UNAVAILABLE


class Reported(LiuhenError):
    """A command ran to its end and printed its report, and the outcome is not a success:
    what is left to do is to exit with ``exit_code``. The message is for programs and
    logs (the user has read the report)."""

    reported = True

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class CheckFailed(Reported):
    """A verification ran and found problems, listed in its report."""

    exit_code = EXIT_FAILED_CHECK


class PartlyRefused(Reported):
    """A job finished, but refused some of its inputs, listed in its report."""

    exit_code = EXIT_PARTIAL
