"""Where a verifier on this host finds signed chain heads (anchors): the station journal,
the object store and the files an auditor names (exported bags, anchor files).

Wiring, like :mod:`liuhen.app`: the catalog does not know the journal (``ingest``), so
the commands gather the anchors here and hand them to :func:`catalog.verify_chain` /
:func:`catalog.custody.check_anchors`, the one check behind `custody verify`, `verify
--district` and `doctor`.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archive_export.bagparse import BoundedTarInfo
from catalog.anchors import file_heads, store_heads
from catalog.chainrule import ChainHead, Issue
from config import LiuhenError, Settings
from config.errors import EXIT_USAGE
from config.i18n import _
from ingest.journal import read_anchors
from storage import ObjectStore


class AnchorFileError(LiuhenError):
    """An anchors file named on the command line cannot be read (exit 2)."""

    exit_code = EXIT_USAGE


@dataclass
class Reached:
    heads: list[ChainHead] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)  # unreadable or malformed anchors
    sources: dict[str, int] = field(default_factory=dict)  # where -> heads read
    unreachable: list[str] = field(default_factory=list)  # sources that could not be read


def reachable_anchors(
    settings: Settings | None, store: ObjectStore | None, files: Sequence[Path] = ()
) -> Reached:
    """Every anchor within reach; a source that cannot be read is noted, not fatal."""
    got = Reached()

    def add(where: str, heads: list[ChainHead], issues: list[Issue]) -> None:
        got.heads += heads
        got.issues += issues
        got.sources[where] = len(heads)

    if settings is not None:
        path = settings.journal_path
        add(f"station journal {path}", read_anchors(path), [])
    if store is not None:
        try:
            add(f"store {store.url}", *store_heads(store))
        except LiuhenError as exc:
            got.unreachable.append(
                _("store {url}: {error}").format(url=store.url, error=exc.message)
            )
    for p in files:
        try:
            add(str(p), *file_heads(p, tarinfo=BoundedTarInfo))
        # EOFError: a compressed file cut off (gzip, lzma), which must not pass for the
        # user's Ctrl-D (the CLI reports EOFError as "aborted").
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise AnchorFileError(
                _("anchors {path}: cannot read: {error}").format(path=p, error=exc),
                hint=_("name an exported bag (folder or .tar) or an anchors file"),
            ) from exc
    return got
