"""The custody check of `liuhen custody verify`, for the command line and the audit page
alike: which keys are trusted from outside the catalog, which signed chain heads
(anchors) are within reach, and the walk of the chains against them
(:func:`catalog.verify_chain`, whose anchor check is the one behind `verify --district`
and `doctor` too).

It lives here, not in ``liuhen``, because the pages may not import the command line
(tests/test_layers.py); ``liuhen.anchoring`` re-exports it for the commands.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from archive_export.bagparse import BoundedTarInfo
from catalog.anchors import file_heads, store_heads
from catalog.chainrule import ChainHead, Issue
from catalog.custody import CustodyReport, Problem, verify_chain
from catalog.signing import Signer, load_keyring
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


def trusted_keys(
    settings: Settings, signer: Callable[[], Signer], trust_files: Iterable[str | Path] = ()
) -> dict[str, set[str]]:
    """Station id -> key ids trusted from outside the catalog: the auditor's key rings,
    and this host's own key file (a trust anchor the catalog cannot replace). ``signer``
    is called only when the key file is there (a host without one still verifies)."""
    trusted: dict[str, set[str]] = {}
    for path in trust_files:
        for sid, ids in load_keyring(Path(path)).items():
            trusted.setdefault(sid, set()).update(ids)
    if settings.key_file.exists():
        trusted.setdefault(settings.station.id, set()).add(signer().key_id)
    return trusted


def check_custody(
    session: Session,
    reached: Reached,
    trusted: dict[str, set[str]],
    *,
    station: str | None = None,
    ring: bool = False,
) -> CustodyReport:
    """Every chain (or ``station``'s) walked and held against the anchors reached; the
    anchors that could not be read are problems too (in a check of one station, those of
    that station and those that name none)."""
    report = verify_chain(
        session, trusted=trusted, station_id=station, ring=ring, anchors=reached.heads
    )
    report.problems += [
        Problem(i.station_id, i.seq, None, i.kind, i.detail)
        for i in reached.issues
        if station is None or i.station_id in (station, "")
    ]
    return report
