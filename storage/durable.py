"""Making a write survive a power cut: the one fsync of a file and of a folder.

A renamed, linked or unlinked name is durable only once its folder is synced; a file's
bytes only once the file is. Every package that writes evidence to disk (the stores,
staging, derivatives, export bags) uses these two, so the rule lives in one place.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path | str) -> None:
    """Make a rename, link or unlink in the folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make the bytes written to the file ``path`` durable (read-only files too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
