"""The custody rule, implemented once: what makes a custody event, a station's chain and a
signed chain head (an anchor) valid.

Every verifier applies it: ``liuhen custody verify`` to the catalog's rows
(:func:`catalog.custody.verify_chain`), ``liuhen verify BUNDLE`` and ``liuhen
four-properties`` to a bag's custody excerpt (:func:`check_excerpt`). It imports neither
SQLAlchemy nor boto3, so an offline bag verification starts quickly.

The rule, per event (in station, sequence order):

* ``edited``: its canonical bytes no longer hash to its ``event_hash``;
* ``unknown-key``: signed by a key the verifier does not hold, or by another station's key;
* ``bad-signature``: the Ed25519 signature does not verify with the named key;
* ``untrusted-key``: the station is pinned (its key file, a key ring) to other keys;
* ``untrusted-station``: an auditor's key ring was given and does not name the station;
* ``retired-key``: signed by a key after its retirement. "After" is judged by the chain,
  not only by the event's own time (which its signer chose): once any earlier event of
  the station is dated after the retirement, a later event by that key is reported too;
* links: in a whole chain ``gap``, ``duplicate`` and ``broken-link``; in an excerpt (which
  holds only some events) consecutive numbers must link, and a number must not repeat.

A signed chain head says "station S's chain had reached event #N, whose hash is H, at
time T", signed by S. Kept where the catalog's owner cannot rewrite it (the station
journal, an Object-Locked store object, an exported bag), it makes the end of the chain
evidence too (see docs/custody.md): :func:`compare_heads` reports a catalog that ends
before an anchored event (``truncated``), holds another event there (``rollback``) or
lacks it (``missing``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Protocol

from catalog.canonical import GENESIS, canonical_bytes, canonical_json, format_time
from catalog.signing import Signer, key_id_of, verify_signature, verify_signatures
from config.i18n import N_, _

EVENT_FIELDS = (
    "station_id",
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "details",
    "prev_hash",
    "event_hash",
    "key_id",
    "signature",
)
_TEXT = itemgetter(*(i for i, f in enumerate(EVENT_FIELDS) if f != "seq"))
_FIELDS_OF = itemgetter(*EVENT_FIELDS)  # a line's values in field order (KeyError: one missing)
_ONLY_STR = {str}
HEAD_TYPE = "liuhen-chain-head"
# Lines of an anchors file reported one by one before the rest is summarised.
MAX_BAD_HEAD_LINES = 20
HEAD_VERSION = 1


class Event(Protocol):
    """A custody event as every verifier sees it: a catalog row or a line of an excerpt."""

    station_id: str
    seq: int
    at: str
    actor: str
    action: str
    object_type: str
    object_id: str
    details: str
    prev_hash: str
    event_hash: str
    key_id: str
    signature: str


@dataclass(slots=True)
class EventRecord:
    """An event read from an excerpt (JSON), with the fields of :class:`Event`."""

    station_id: str
    seq: int
    at: str
    actor: str
    action: str
    object_type: str
    object_id: str
    details: str
    prev_hash: str
    event_hash: str
    key_id: str
    signature: str


def event_bytes(ev: Event) -> bytes:
    """The canonical bytes an event's hash and signature cover (docs/custody.md)."""
    return canonical_bytes(
        station_id=ev.station_id,
        seq=ev.seq,
        at=ev.at,
        actor=ev.actor,
        action=ev.action,
        object_type=ev.object_type,
        object_id=ev.object_id,
        details=ev.details,
        prev_hash=ev.prev_hash,
        key_id=ev.key_id,
    )


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` for text from a bag, a store or a file an auditor names: nesting
    deeper than the parser goes (``[[[[…``) raises ValueError like any other malformed
    JSON, not RecursionError, so every caller's "not JSON" path reports it."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deep") from exc


# The C scanner json.loads ends in, called without json.loads's Python layers (its
# whitespace handling and checks cost as much as the scanning of a custody line).
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def parse_json_line(text: str) -> Any:
    """:func:`parse_json` of one line, the same value or the same error: a line that is
    exactly one JSON value (the usual custody line) is scanned directly; anything else
    (leading or trailing blanks, extra data, malformed, nested too deep) goes through
    :func:`parse_json`, which answers or raises as it always did."""
    try:
        doc, end = _SCAN(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return parse_json(text)
    return doc if end == len(text) else parse_json(text)


def event_from_json(doc: object) -> EventRecord:
    """An excerpt line's object as an event; ValueError naming what is wrong."""
    if type(doc) is dict:
        # The common case in one pass: every field there, text but ``seq`` a number
        # (``type(...) is int`` also refuses a bool). Anything else: the checks below.
        try:
            values = _FIELDS_OF(doc)
        except KeyError:
            values = ()
        if values and type(values[1]) is int and set(map(type, _TEXT(values))) == _ONLY_STR:
            return EventRecord(*values)
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    missing = [f for f in EVENT_FIELDS if f not in doc]
    if missing:
        raise ValueError("missing " + ", ".join(missing))
    wrong = [f for f in EVENT_FIELDS if f != "seq" and not isinstance(doc[f], str)]
    if wrong:
        raise ValueError("not text: " + ", ".join(wrong))
    if isinstance(doc["seq"], bool) or not isinstance(doc["seq"], int):
        raise ValueError("seq not a number")
    return EventRecord(*(doc[f] for f in EVENT_FIELDS))


@dataclass(frozen=True)
class Key:
    """A station's public key as the verifier knows it."""

    key_id: str
    station_id: str
    public_key: bytes
    retired_at: str | None = None  # format_time text; None: still in use


def retired_text(when: datetime | str | None) -> str | None:
    """A retirement time in the events' own time format, so the two compare as text.
    ValueError for anything else (a bag's keys.json or an event may hold a number)."""
    if when is None or when == "":
        return None
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    elif not isinstance(when, datetime):
        raise ValueError(f"retired_at {when!r} is not a time")
    if when.tzinfo is None:  # SQLite hands back naive UTC
        when = when.replace(tzinfo=UTC)
    return format_time(when)


KEY_RETIRED = "key-retired"  # the custody event that retires a key (catalog.custody.retire_key)


def with_retirements(keys: Mapping[str, Key], events: Iterable[Event]) -> dict[str, Key]:
    """``keys`` with every retirement the custody log records as a ``key-retired`` event.

    A retirement is a signed fact of the chain, not only a column of a key row (or an
    entry of ``keys.json``) that whoever holds the catalog can clear: the earlier of the
    two counts. Honouring an event's retirement can only add findings, so an event that
    is itself forged is no way round it (it is reported as edited or badly signed).
    """
    found = dict(keys)
    for ev in events:
        if ev.action != KEY_RETIRED or ev.object_type != "key" or ev.object_id not in found:
            continue
        try:
            details = parse_json(ev.details)
            when = retired_text(details["retired_at"]) if isinstance(details, dict) else None
        except (ValueError, TypeError, KeyError):
            continue  # not a retirement this rule can read; the event is checked as any other
        key = found[ev.object_id]
        if when is not None and (key.retired_at is None or when < key.retired_at):
            found[ev.object_id] = replace(key, retired_at=when)
    return found


@dataclass(frozen=True)
class Trust:
    """Key ids the verifier accepts per station, known from outside the catalog.

    ``ring``: an auditor's key ring was given, so a station it does not name is untrusted
    (without one, only the pinned stations are judged: a station's own key file pins only
    itself).
    """

    pinned: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ring: bool = False

    @classmethod
    def of(cls, pinned: Mapping[str, Iterable[str]] | None, ring: bool = False) -> Trust:
        return cls({s: frozenset(ids) for s, ids in (pinned or {}).items()}, ring)


# What each kind of issue is called where a person reads it; the kind itself (the key)
# is what ``--json`` and stored reports carry, in every language.
ISSUE_KINDS: Mapping[str, str] = {
    "bad-anchor": N_("bad-anchor"),
    "bad-signature": N_("bad-signature"),
    "broken-link": N_("broken-link"),
    "duplicate": N_("duplicate"),
    "edited": N_("edited"),
    "forked-anchor": N_("forked-anchor"),
    "format": N_("format"),
    "gap": N_("gap"),
    "key-mismatch": N_("key-mismatch"),
    "missing": N_("missing"),
    "missing-chain": N_("missing-chain"),
    "retired-key": N_("retired-key"),
    "rollback": N_("rollback"),
    "truncated": N_("truncated"),
    "unknown-key": N_("unknown-key"),
    "untrusted-key": N_("untrusted-key"),
    "untrusted-station": N_("untrusted-station"),
}


def kind_label(kind: str) -> str:
    """An issue's kind in the reader's language (an unknown kind as it is)."""
    return _(ISSUE_KINDS[kind]) if kind in ISSUE_KINDS else kind


@dataclass(frozen=True)
class Issue:
    kind: str
    station_id: str
    seq: int | None
    detail: str
    line: int | None = None  # the excerpt line, when checking an excerpt
    part: str = "events"  # what an excerpt's issue is about: events | keys | anchors


def _signature_bytes(signature_hex: str) -> bytes | None:
    try:
        return bytes.fromhex(signature_hex)
    except (ValueError, TypeError):
        return None


class ChainChecker:
    """Applies the rule to events fed in (station, seq) order.

    ``whole``: the events are whole chains from event #1 (the catalog): numbers missing
    between two events are a gap. Otherwise an excerpt: only consecutive numbers link.
    """

    def __init__(self, keys: Mapping[str, Key], trust: Trust | None = None, *, whole: bool) -> None:
        self.keys = keys
        self.trust = trust or Trust()
        self.whole = whole
        self._station: str | None = None
        self._last: tuple[int, str] | None = None  # (seq, event_hash) of the previous event
        self._latest_at = ""  # the latest time seen so far in this station's chain
        self.stations: dict[str, int] = {}
        self.links = 0

    def check(self, ev: Event, line: int | None = None) -> list[Issue]:
        return self._check(ev, line, event_bytes(ev), None)

    def check_all(self, events: Sequence[tuple[int | None, Event]]) -> list[Issue]:
        """:meth:`check` of each ``(line, event)`` in turn, the same rule, with every
        signature verified in one batch first (spread over the cores)."""
        data = [event_bytes(ev) for _line, ev in events]
        jobs: list[tuple[bytes, bytes, bytes]] = []
        batched: list[int] = []  # index into events of each job
        for i, (_line, ev) in enumerate(events):
            key = self.keys.get(ev.key_id)
            signature = _signature_bytes(ev.signature)
            if key is not None and signature is not None:
                jobs.append((key.public_key, signature, data[i]))
                batched.append(i)
        verdicts: list[bool | None] = [None] * len(events)
        for i, ok in zip(batched, verify_signatures(jobs), strict=True):
            verdicts[i] = ok
        issues: list[Issue] = []
        for (line, ev), d, verdict in zip(events, data, verdicts, strict=True):
            issues += self._check(ev, line, d, verdict)
        return issues

    def _check(self, ev: Event, line: int | None, data: bytes, signed: bool | None) -> list[Issue]:
        """The rule for one event; ``signed``: its signature's verdict when already known
        (None: verify it here)."""
        issues: list[Issue] = []

        def issue(kind: str, detail: str) -> None:
            issues.append(Issue(kind, ev.station_id, ev.seq, detail, line))

        if ev.station_id != self._station:
            self._station, self._last, self._latest_at = ev.station_id, None, ""
            self.stations[ev.station_id] = 0
        self.stations[ev.station_id] += 1
        self._check_link(ev, issue)
        self._last = (ev.seq, ev.event_hash)
        self._latest_at = max(self._latest_at, ev.at)
        if hashlib.sha256(data).hexdigest() != ev.event_hash:
            issue(
                "edited",
                _("content does not match its hash (action {action} on {type} {id})").format(
                    action=repr(ev.action), type=ev.object_type, id=ev.object_id
                ),
            )
        self._check_trust(ev, issue)
        key = self.keys.get(ev.key_id)
        if key is None:
            issue(
                "unknown-key",
                _("signed by {key}, which the verifier does not hold").format(key=ev.key_id),
            )
            return issues
        if key.station_id and key.station_id != ev.station_id:
            issue(
                "unknown-key",
                _("signed by {key}, a key of station {station}").format(
                    key=ev.key_id, station=key.station_id
                ),
            )
        if key.retired_at is not None and self._latest_at > key.retired_at:
            issue(
                "retired-key",
                _(
                    "signed by {key} after its retirement at {retired} "
                    "(the chain had reached {latest})"
                ).format(key=ev.key_id, retired=key.retired_at, latest=self._latest_at),
            )
        if signed is None:
            signed = self.verifies(key, ev.signature, data)
        if not signed:
            issue("bad-signature", _("signature does not verify with {key}").format(key=ev.key_id))
        return issues

    def _check_link(self, ev: Event, issue: Callable[[str, str], None]) -> None:
        if self.whole:
            expect_seq, prev = (self._last[0] + 1, self._last[1]) if self._last else (1, GENESIS)
            if ev.seq > expect_seq:
                issue(
                    "gap",
                    _("events #{first}..#{last} are missing (deleted rows?)").format(
                        first=expect_seq, last=ev.seq - 1
                    ),
                )
            elif ev.seq < expect_seq:
                issue("duplicate", _("sequence number {seq} repeats").format(seq=ev.seq))
            if ev.prev_hash != prev:
                issue(
                    "broken-link",
                    _(
                        "does not follow the previous event "
                        "(a row was inserted, deleted or reordered)"
                    ),
                )
            else:
                self.links += 1
            return
        if self._last is None:
            return
        if ev.seq == self._last[0]:
            issue("duplicate", _("sequence number {seq} appears twice").format(seq=ev.seq))
        elif ev.seq == self._last[0] + 1:
            self.links += 1
            if ev.prev_hash != self._last[1]:
                issue(
                    "broken-link",
                    _("does not follow event #{seq} (inserted, deleted or edited)").format(
                        seq=self._last[0]
                    ),
                )

    def _check_trust(self, ev: Event, issue: Callable[[str, str], None]) -> None:
        pinned = self.trust.pinned.get(ev.station_id)
        if pinned is not None:
            if ev.key_id not in pinned:
                issue(
                    "untrusted-key",
                    _(
                        "signed by {key}, which is not a trusted key of the station (key replaced?)"
                    ).format(key=ev.key_id),
                )
        elif self.trust.ring:
            issue(
                "untrusted-station",
                _(
                    "station {station} is not in the key ring, so its key {key} is not trusted"
                ).format(station=ev.station_id, key=ev.key_id),
            )

    def verifies(self, key: Key, signature_hex: str, data: bytes) -> bool:
        signature = _signature_bytes(signature_hex)
        return signature is not None and verify_signature(key.public_key, signature, data)

    def finish(self) -> list[Issue]:
        """What only the whole set shows: a trusted station with no events at all."""
        if not self.whole:
            return []
        return [
            Issue("missing-chain", sid, None, _("no custody events for a trusted station"))
            for sid in sorted(self.trust.pinned)
            if sid not in self.stations
        ]


def key_issues(keys: Iterable[Key]) -> list[Issue]:
    """A key whose bytes do not match its id (a key row or entry replaced)."""
    return [
        Issue(
            "key-mismatch",
            k.station_id,
            None,
            _("public key stored under {key} does not match that id (the key was replaced)").format(
                key=k.key_id
            ),
        )
        for k in keys
        if key_id_of(k.public_key) != k.key_id
    ]


# -- signed chain heads (anchors) -------------------------------------------------------------


@dataclass(frozen=True)
class ChainHead:
    """A station's signed statement of how far its chain had reached."""

    station_id: str
    seq: int
    event_hash: str
    at: str  # when it was signed (format_time)
    key_id: str
    signature: str
    source: str = field(default="", compare=False)  # where it was read from

    def signed_bytes(self) -> bytes:
        return head_bytes(self.station_id, self.seq, self.event_hash, self.at, self.key_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "type": HEAD_TYPE,
            "v": HEAD_VERSION,
            "station_id": self.station_id,
            "seq": self.seq,
            "event_hash": self.event_hash,
            "at": self.at,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def to_line(self) -> str:
        return canonical_json(self.as_json())

    def describe(self) -> str:
        if self.source:
            return _("#{seq} (event {hash}…, signed {at} from {source})").format(
                seq=self.seq, hash=self.event_hash[:16], at=self.at, source=self.source
            )
        return _("#{seq} (event {hash}…, signed {at})").format(
            seq=self.seq, hash=self.event_hash[:16], at=self.at
        )


def head_bytes(station_id: str, seq: int, event_hash: str, at: str, key_id: str) -> bytes:
    return canonical_json(
        {
            "type": HEAD_TYPE,
            "v": HEAD_VERSION,
            "station": station_id,
            "seq": seq,
            "event": event_hash,
            "at": at,
            "key": key_id,
        }
    ).encode("utf-8")


def sign_head(signer: Signer, seq: int, event_hash: str, at: datetime | None = None) -> ChainHead:
    when = format_time(at or datetime.now(UTC))
    kid = signer.key_id
    data = head_bytes(signer.station_id, seq, event_hash, when, kid)
    return ChainHead(signer.station_id, seq, event_hash, when, kid, signer.sign(data).hex())


def head_from_json(doc: object, source: str = "") -> ChainHead:
    """A chain head read from JSON; ValueError naming what is wrong."""
    if not isinstance(doc, dict) or doc.get("type") != HEAD_TYPE:
        raise ValueError(_("not a {type} document").format(type=HEAD_TYPE))
    text = ("station_id", "event_hash", "at", "key_id", "signature")
    wrong = [f for f in text if not isinstance(doc.get(f), str)]
    seq = doc.get("seq")
    if wrong or isinstance(seq, bool) or not isinstance(seq, int):
        raise ValueError(
            _("missing or wrong fields: {fields}").format(fields=", ".join(wrong or ["seq"]))
        )
    return ChainHead(
        doc["station_id"],
        seq,
        doc["event_hash"],
        doc["at"],
        doc["key_id"],
        doc["signature"],
        source,
    )


def heads_from_lines(data: bytes, source: str) -> tuple[list[ChainHead], list[Issue]]:
    """Chain heads from JSON lines (an anchors file, a bag's ``anchors.jsonl``)."""
    heads: list[ChainHead] = []
    issues: list[Issue] = []
    for number, line in enumerate(data.decode("utf-8", "replace").split("\n"), 1):
        if not line.strip():
            continue
        try:
            heads.append(head_from_json(parse_json(line), f"{source} line {number}"))
        except ValueError as exc:
            if len(issues) == MAX_BAD_HEAD_LINES:  # not an anchors file: say so once
                issues.append(
                    Issue(
                        "bad-anchor",
                        "",
                        None,
                        _(
                            "{source}: more lines that are not chain heads (not an anchors file?)"
                        ).format(source=source),
                        number,
                        "anchors",
                    )
                )
                break
            issues.append(
                Issue(
                    "bad-anchor",
                    "",
                    None,
                    _("{source} line {number}: {error}").format(
                        source=source, number=number, error=exc
                    ),
                    number,
                    "anchors",
                )
            )
    return heads, issues


def check_heads(
    heads: Iterable[ChainHead], keys: Mapping[str, Key], trust: Trust | None = None
) -> tuple[list[ChainHead], list[Issue]]:
    """The heads whose signature verifies with a known, trusted key of their station;
    an issue for each other one (a forged or damaged anchor is itself evidence)."""
    trust = trust or Trust()
    checker = ChainChecker(keys, trust, whole=False)
    good: list[ChainHead] = []
    issues: list[Issue] = []
    for h in heads:

        def bad(kind: str, detail: str, _h: ChainHead = h) -> None:
            issues.append(
                Issue(
                    kind,
                    _h.station_id,
                    _h.seq,
                    _("chain head {head}: {detail}").format(head=_h.describe(), detail=detail),
                )
            )

        key = keys.get(h.key_id)
        pinned = trust.pinned.get(h.station_id)
        if key is None or (key.station_id and key.station_id != h.station_id):
            bad(
                "bad-anchor",
                _("signed by {key}, not a known key of the station").format(key=h.key_id),
            )
        elif pinned is not None and h.key_id not in pinned:
            bad(
                "bad-anchor",
                _("signed by {key}, not a trusted key of the station").format(key=h.key_id),
            )
        elif not checker.verifies(key, h.signature, h.signed_bytes()):
            bad("bad-anchor", _("signature does not verify with {key}").format(key=h.key_id))
        else:
            if key.retired_at is not None and h.at > key.retired_at:
                bad(
                    "retired-key",
                    _("signed by {key} after its retirement at {retired}").format(
                        key=h.key_id, retired=key.retired_at
                    ),
                )
            good.append(h)
    return good, issues


class ChainView(Protocol):
    """What comparing heads needs of the chains they anchor."""

    def last_seq(self, station_id: str) -> int:
        """The station's highest event number (0: no events)."""
        ...

    def hashes(self, station_id: str, seqs: Iterable[int]) -> Mapping[int, str]:
        """The event hash at each of these numbers that exists."""
        ...


def compare_heads(
    heads: Iterable[ChainHead], chains: ChainView
) -> tuple[list[Issue], dict[str, int]]:
    """Verified heads against the chains: tail truncation, rollback, missing events and
    forked heads; with the last anchored number of each station."""
    by_station: dict[str, dict[tuple[int, str], ChainHead]] = {}
    for h in heads:
        by_station.setdefault(h.station_id, {}).setdefault((h.seq, h.event_hash), h)
    issues: list[Issue] = []
    last_anchored: dict[str, int] = {}
    for sid in sorted(by_station):
        anchored = sorted(by_station[sid].values(), key=lambda h: (h.seq, h.event_hash))
        top = anchored[-1]
        last_anchored[sid] = top.seq
        issues += _forks(sid, anchored)
        tail = chains.last_seq(sid)
        beyond = [h for h in anchored if h.seq > tail]
        if beyond:
            have = _("ends at #{seq}").format(seq=tail) if tail else _("holds no event")
            issues.append(
                Issue(
                    "truncated",
                    sid,
                    top.seq,
                    _(
                        "the catalog {have}, but the station signed a chain head at "
                        "{head}: events #{first}..#{last} are missing (the newest "
                        "events were deleted or the catalog restored from an earlier copy); last "
                        "anchored seq {last}"
                    ).format(have=have, head=top.describe(), first=tail + 1, last=top.seq),
                )
            )
        within = [h for h in anchored if h.seq <= tail]
        found = chains.hashes(sid, {h.seq for h in within})
        for h in within:
            actual = found.get(h.seq)
            if actual is None:
                issues.append(
                    Issue(
                        "missing",
                        sid,
                        h.seq,
                        _(
                            "event #{seq}, anchored by chain head {head}, is not in the "
                            "catalog; last anchored seq {last}"
                        ).format(seq=h.seq, head=h.describe(), last=top.seq),
                    )
                )
            elif actual != h.event_hash:
                issues.append(
                    Issue(
                        "rollback",
                        sid,
                        h.seq,
                        _(
                            "event #{seq} in the catalog ({hash}…) is not the event the "
                            "station anchored in chain head {head}: the catalog was "
                            "rolled back to an earlier copy or rewritten; last anchored seq "
                            "{last}"
                        ).format(seq=h.seq, hash=actual[:16], head=h.describe(), last=top.seq),
                    )
                )
    return issues, last_anchored


def _forks(sid: str, anchored: list[ChainHead]) -> list[Issue]:
    seen: dict[int, ChainHead] = {}
    issues: list[Issue] = []
    for h in anchored:
        other = seen.setdefault(h.seq, h)
        if other is not h:
            issues.append(
                Issue(
                    "forked-anchor",
                    sid,
                    h.seq,
                    _(
                        "two validly signed chain heads at #{seq} name different events "
                        "({one} and {other}): the station's chain forked (a "
                        "rollback that went on docking, or its key was used elsewhere)"
                    ).format(seq=h.seq, one=other.describe(), other=h.describe()),
                )
            )
    return issues


# -- a bag's custody excerpt ------------------------------------------------------------------


@dataclass
class ExcerptResult:
    events: list[tuple[int, EventRecord]] = field(default_factory=list)  # (line, event)
    issues: list[Issue] = field(default_factory=list)
    keys: dict[str, Key] = field(default_factory=dict)
    stations: dict[str, int] = field(default_factory=dict)
    links: int = 0
    heads: int = 0


def keys_from_json(data: bytes, issues: list[Issue], where: str) -> dict[str, Key]:
    """The keys of a bag's ``keys.json``; a malformed document or entry is an issue."""
    keys: dict[str, Key] = {}
    try:
        rows = parse_json(data.decode("utf-8"))["keys"]
        for n, k in enumerate(rows, 1):
            key = Key(
                k["key_id"],
                str(k.get("station_id") or ""),
                bytes.fromhex(k["public_key_hex"]),
                retired_text(k.get("retired_at")),
            )
            if key_id_of(key.public_key) != key.key_id:
                issues.append(
                    Issue(
                        "key-mismatch",
                        key.station_id,
                        None,
                        _("{where} key #{n}: public key does not match its id {key}").format(
                            where=where, n=n, key=key.key_id
                        ),
                        part="keys",
                    )
                )
                continue
            keys[key.key_id] = key
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        issues.append(
            Issue(
                "format",
                "",
                None,
                _("{where}: not the expected keys document: {error}").format(
                    where=where, error=repr(exc)
                ),
                part="keys",
            )
        )
    return keys


def check_excerpt(
    events: bytes,
    keys: bytes | None,
    trust: Trust | None = None,
    *,
    heads: bytes | None = None,
    where: str = "custody.jsonl",
) -> ExcerptResult:
    """A custody excerpt (JSON lines of events) with its keys and, when present, the
    signed chain heads it carries: the rule above, line by line."""
    result = ExcerptResult()
    if keys is not None:
        result.keys = keys_from_json(keys, result.issues, "keys.json")
    order: list[tuple[str, int, int]] = []  # what the rule's order sorts on, per event
    for number, line in enumerate(events.decode("utf-8", "replace").split("\n"), 1):
        if not line.strip():
            continue
        try:
            ev = event_from_json(parse_json_line(line))
            result.events.append((number, ev))
            order.append((ev.station_id, ev.seq, number))
        except ValueError as exc:
            result.issues.append(
                Issue(
                    "format",
                    "",
                    None,
                    _("{where} line {number}: not a custody event: {error}").format(
                        where=where, number=number, error=exc
                    ),
                    number,
                )
            )
    result.keys = with_retirements(result.keys, (ev for _n, ev in result.events))
    checker = ChainChecker(result.keys, trust, whole=False)
    ordered = [
        result.events[i] for i in sorted(range(len(order)), key=order.__getitem__)
    ]  # (station, seq, line) order, as the rule reads a chain
    result.issues += checker.check_all(ordered)
    result.stations, result.links = checker.stations, checker.links
    if heads is not None:
        read, bad = heads_from_lines(heads, "anchors.jsonl")
        good, wrong = check_heads(read, result.keys, trust)
        result.heads = len(good)
        result.issues += [replace(i, part="anchors") for i in bad + wrong]
        result.issues += _heads_against_excerpt(good, ordered)  # on the excerpt's line
    return result


def _heads_against_excerpt(
    heads: list[ChainHead], events: list[tuple[int, EventRecord]]
) -> list[Issue]:
    """An excerpt holds only some events: a head can only contradict one it holds."""
    at = {(ev.station_id, ev.seq): (n, ev.event_hash) for n, ev in events}
    issues: list[Issue] = []
    for h in heads:
        got = at.get((h.station_id, h.seq))
        if got is not None and got[1] != h.event_hash:
            issues.append(
                Issue(
                    "rollback",
                    h.station_id,
                    h.seq,
                    _(
                        "event #{seq} in the excerpt ({hash}…) is not the event of the "
                        "signed chain head {head}"
                    ).format(seq=h.seq, hash=got[1][:16], head=h.describe()),
                    got[0],
                )
            )
    return issues
