"""Signed chain heads (anchors), written and read outside the catalog.

After every docking and every few minutes while it works, a station signs the head of its
own custody chain (station, seq, event hash, time; :mod:`catalog.chainrule`) and writes
it to its journal (local to the station) and to the object store as an immutable object
(``anchors/<station>/<seq>-<hash>.json``, under Object Lock where the bucket has it). An
export copies the heads into the bag. Whoever controls the catalog alone can then no
longer delete the newest events, or restore an older copy of the catalog, unnoticed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tarfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.chainrule import (
    ChainHead,
    Issue,
    Key,
    check_heads,
    head_from_json,
    heads_from_lines,
    parse_json,
    sign_head,
)
from catalog.errors import CatalogError
from catalog.models import CustodyEvent
from catalog.signing import Signer
from config.errors import EXIT_FAILED_CHECK
from config.i18n import _
from storage import Digest, ObjectStore, StorageError

if TYPE_CHECKING:
    from catalog.db import Catalog

log = logging.getLogger(__name__)

PREFIX = "anchors/"
BAG_FILE = "data/metadata/anchors.jsonl"
# How many of each station's newest store anchors a verifier reads. The newest one is the
# evidence (a station never anchors over a chain that contradicts its own last anchor,
# see publish); a few more cover a head written by a second process at the same time.
STORE_NEWEST = 4
# Anchors are kept as long as the custody log matters: longer than any retention period
# a recording can get short of 永久 (then the store's default retention applies too).
RETAIN = timedelta(days=366 * 30)
# An anchors file holds a few hundred bytes a head; beyond this it is something else.
MAX_FILE_BYTES = 64 << 20
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,100}$")


class AnchorLog(Protocol):
    """The station journal as anchors use it (ingest.journal.Journal satisfies it)."""

    def add_anchor(self, head: ChainHead) -> None: ...

    def anchors(
        self, station_id: str | None = None, newest: int | None = None
    ) -> list[ChainHead]: ...


class AnchorRefused(CatalogError):
    """The catalog contradicts the station's own last anchor: signing its head now would
    bless a truncated or rolled-back chain."""

    exit_code = EXIT_FAILED_CHECK


def station_segment(station_id: str) -> str:
    """The station's folder under anchors/: its id when that is a valid key segment."""
    if _SEGMENT.match(station_id):
        return station_id
    return "h-" + hashlib.sha256(station_id.encode("utf-8")).hexdigest()[:32]


def store_key(head: ChainHead) -> str:
    return f"{PREFIX}{station_segment(head.station_id)}/{head.seq:012d}-{head.event_hash[:16]}.json"


def chain_head(session: Session, station_id: str) -> tuple[int, str] | None:
    """The station's newest event (seq, event hash) in the catalog."""
    row = session.execute(
        select(CustodyEvent.seq, CustodyEvent.event_hash)
        .where(CustodyEvent.station_id == station_id)
        .order_by(CustodyEvent.seq.desc())
        .limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else None


def publish(
    session: Session,
    signer: Signer,
    *,
    journal: AnchorLog | None = None,
    store: ObjectStore | None = None,
) -> ChainHead | None:
    """Sign the signer's chain head as the catalog holds it and write it out of reach of
    the catalog: to ``journal`` and ``store``. None when the chain is empty.

    Raises AnchorRefused when the catalog no longer holds the station's last anchored
    event (as the journal knows it): the problem is left for the verifiers to report,
    never papered over with a fresh head. A head already anchored is not signed again;
    its store copy is written when the store missed it before.
    """
    head = chain_head(session, signer.station_id)
    if head is None:
        return None
    seq, event_hash = head
    last = journal.anchors(signer.station_id, newest=1) if journal is not None else []
    if not last and store is not None:  # a host without a journal: its newest stored head
        last = _newest_own_in_store(store, signer)
    if last:
        _refuse_if_contradicted(session, last[0], seq)
        if (last[0].seq, last[0].event_hash) == (seq, event_hash):
            if store is not None:
                _put(store, last[0])
            return last[0]
    signed = sign_head(signer, seq, event_hash)
    if journal is not None:
        journal.add_anchor(signed)  # the station's own copy first: it never fails remotely
    if store is not None:
        _put(store, signed)
    return signed


def _newest_own_in_store(store: ObjectStore, signer: Signer) -> list[ChainHead]:
    """The newest head of the signer's chain in the store, if this key signed it (a head
    planted under another key must not stop the station from anchoring)."""
    keys = sorted(store.list(f"{PREFIX}{station_segment(signer.station_id)}/"))
    if not keys:
        return []
    try:
        with store.open(keys[-1]) as f:
            h = head_from_json(parse_json(f.read(1 << 16)), f"store {keys[-1]}")
    except (ValueError, StorageError):
        return []
    key = Key(signer.key_id, signer.station_id, signer.public_key)
    good, _bad = check_heads([h], {signer.key_id: key})
    return good if good and h.station_id == signer.station_id else []


def _refuse_if_contradicted(session: Session, last: ChainHead, seq: int) -> None:
    held = session.scalar(
        select(CustodyEvent.event_hash).where(
            CustodyEvent.station_id == last.station_id, CustodyEvent.seq == last.seq
        )
    )
    if seq < last.seq or held != last.event_hash:
        raise AnchorRefused(
            _(
                "custody chain of station {station}: the catalog no longer holds event "
                "#{seq} as anchored at {at} (catalog head #{head}); not signing over it"
            ).format(station=last.station_id, seq=last.seq, at=last.at, head=seq),
            hint=_(
                "run 'liuhen custody verify'; restore the catalog from a copy that "
                "holds the anchored events"
            ),
        )


def _put(store: ObjectStore, head: ChainHead) -> None:
    """Write the head as an immutable object; a store that is down only delays this
    (the journal holds the head; the next publish writes it)."""
    key = store_key(head)
    data = (head.to_line() + "\n").encode("utf-8")
    try:
        if store.exists(key):
            return
        store.put(
            key,
            io.BytesIO(data),
            expected=Digest("sha256", hashlib.sha256(data).hexdigest()),
            size=len(data),
            retain_until=datetime.now(UTC) + RETAIN,
        )
    except StorageError as exc:
        log.warning("chain head %s not written to the store yet: %s", key, exc)


def store_heads(
    store: ObjectStore, newest: int = STORE_NEWEST
) -> tuple[list[ChainHead], list[Issue]]:
    """The newest anchors of every station in the store (key names sort by seq)."""
    by_station: dict[str, list[str]] = {}
    for key in store.list(PREFIX):
        parts = key[len(PREFIX) :].split("/")
        if len(parts) == 2 and parts[1].endswith(".json"):
            by_station.setdefault(parts[0], []).append(key)
    heads: list[ChainHead] = []
    issues: list[Issue] = []
    for keys in by_station.values():
        for key in sorted(keys)[-newest:]:
            try:
                with store.open(key) as f:
                    data = f.read(1 << 16)
                heads.append(head_from_json(parse_json(data), f"store {key}"))
            except (ValueError, StorageError) as exc:
                issues.append(
                    Issue(
                        "bad-anchor", "", None, _("store {key}: {error}").format(key=key, error=exc)
                    )
                )
    return heads, issues


def file_heads(
    path: Path, *, tarinfo: type[tarfile.TarInfo] = tarfile.TarInfo
) -> tuple[list[ChainHead], list[Issue]]:
    """Anchors an auditor kept: an exported bag (folder or .tar) or a JSON-lines file of
    chain heads (what ``liuhen custody anchor --json`` or a bag's anchors.jsonl holds).

    A tar is read with ``tarinfo`` (the verifier's bounded header reader, which refuses an
    extended header too large to hold by raising a TarError) and one member at a time."""
    if path.is_dir():
        inner = path / BAG_FILE
        if not inner.is_file():
            return [], [
                Issue(
                    "bad-anchor",
                    "",
                    None,
                    _(
                        "{path}: no {file} (a bag exported before chain heads were written "
                        "has none)"
                    ).format(path=path, file=BAG_FILE),
                )
            ]
        return file_heads(inner)
    try:
        # (Not tarfile.is_tarfile: it reads the first header with the unbounded reader.
        # Closed by the with below: only the open itself tells a tar from a text file.)
        tar = tarfile.open(path, tarinfo=tarinfo)  # noqa: SIM115
    except tarfile.ReadError:
        tar = None  # not a tar: a JSON-lines file of chain heads
    if tar is not None:
        with tar:
            member = _bag_member(tar)
            f = tar.extractfile(member) if member is not None else None
            if member is None or f is None:
                return [], [
                    Issue(
                        "bad-anchor",
                        "",
                        None,
                        _("{path}: no {file}").format(path=path, file=BAG_FILE),
                    )
                ]
            return _some_heads(
                heads_from_lines(f.read(MAX_FILE_BYTES), f"{path}:{member.name}"), path
            )
    if path.stat().st_size > MAX_FILE_BYTES:
        return [], [
            Issue(
                "bad-anchor",
                "",
                None,
                _(
                    "{path}: {size} bytes, too large for an anchors file (name a bag or a "
                    "JSON-lines file of chain heads)"
                ).format(path=path, size=path.stat().st_size),
            )
        ]
    return _some_heads(heads_from_lines(path.read_bytes(), str(path)), path)


def _some_heads(
    read: tuple[list[ChainHead], list[Issue]], path: Path
) -> tuple[list[ChainHead], list[Issue]]:
    """An auditor names a file to check the catalog against it: one that holds no chain
    head at all (empty, /dev/null, the wrong file) checks nothing and must say so rather
    than pass in silence."""
    heads, issues = read
    if not heads and not issues:
        issues = [
            Issue(
                "bad-anchor",
                "",
                None,
                _(
                    "{path}: holds no chain heads (name a bag or a JSON-lines file of chain heads)"
                ).format(path=path),
            )
        ]
    return heads, issues


def _bag_member(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    """The bag's anchors file among the tar's members, read one at a time: tarfile's own
    list of the members it has read is emptied as it goes, so memory does not grow with
    a tar of hundreds of thousands of members."""
    while (m := tar.next()) is not None:
        cast(Any, tar).members.clear()  # (TarFile.members is not in the type stubs)
        if m.isfile() and m.name.split("/", 1)[-1] == BAG_FILE:
            return m
    return None


class Anchorer:
    """Anchors one host's chain head now and then: the station after every docking and
    every few minutes, the worker (whose probe and derive events go on the same host's
    chain) as it works and when it drains. One lock per process: one head per seq.

    Never raises: a catalog or store that is away, or a chain that contradicts the last
    anchor (which the verifiers report), must not stop the evidence flow; it is logged.
    """

    def __init__(
        self,
        catalog: Catalog,
        signer: Signer,
        store: ObjectStore | None,
        interval_s: float,
        journal: AnchorLog | None = None,
    ) -> None:
        self.catalog = catalog
        self.signer = signer
        self.store = store
        self.journal = journal
        self.interval_s = interval_s
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def anchor(self, *, due_only: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if due_only and now - self._at < self.interval_s:
                return
            self._at = now
            try:
                with self.catalog.session() as s:
                    publish(s, self.signer, journal=self.journal, store=self.store)
            except Exception as exc:  # evidence flow must go on; see the docstring
                log.error("custody chain head not anchored: %s: %s", type(exc).__name__, exc)
