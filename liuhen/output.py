"""How commands print: rich text for people, JSON for programs, errors on stderr."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
# Libraries that narrate their own work at INFO (alembic: "Context impl SQLiteImpl",
# "Running upgrade"): detail for -v only, whatever the level of ours.
_CHATTY = ("alembic",)
# Set-up chatter that says nothing about this installation even to -v (alembic lists the
# plugins it loads on every start).
_SILENT = ("alembic.runtime.plugins",)


def configure_logging(verbose: bool) -> None:
    """Logs quiet by default: warnings and errors only (what went wrong, not every step,
    and no 64-hex digests per file); ``-v`` shows every step. Called once, by ``main``,
    before any command: the commands' own ``logging.basicConfig`` then changes nothing."""
    level = logging.INFO if verbose else logging.WARNING
    root = logging.getLogger()
    if not root.handlers:  # a test's or an embedding program's handlers stay theirs
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(level)
    for name in _SILENT:
        logging.getLogger(name).setLevel(logging.WARNING)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


def mark(ok: bool) -> str:
    return "[green]✓[/green]" if ok else "[red]✗[/red]"
