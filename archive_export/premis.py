"""``data/metadata/events.xml``: a PREMIS-style event list of every exported recording.

Each event says what happened (capture, offload, store, fixity check, derivation,
attachment, export ...), when, by which agent and with what outcome. Events that come
from the custody log carry the custody reference (station, seq, event hash), so an
auditor can find the signed original in ``custody.jsonl``; the capture event comes from
the recording's time evidence and the export event from this export itself.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from archive_export.descriptor import _clean
from archive_export.records import RecordInfo

FORMAT = "liuhen-events/1"

# Custody action -> PREMIS-style event type.
EVENT_TYPES = {
    "offloaded": "offload",
    "stored": "store",
    "duplicate-linked": "store",
    "verified": "fixity check",
    "probed": "metadata extraction",
    "flagged-damaged": "validation",
    "derived": "derivation",
    "cleared-from-recorder": "deletion from source",
    "export-started": "export",
}


def event_type(action: str) -> str:
    if action in EVENT_TYPES:
        return EVENT_TYPES[action]
    if "attach" in action:
        return "attachment"
    if "hold" in action:
        return "legal hold"
    if "export" in action:
        return "export"
    if "fixity" in action or "verif" in action:
        return "fixity check"
    return action


def events_xml(
    records: Sequence[RecordInfo], custody: Iterable[dict[str, Any]], *, export: dict[str, Any]
) -> bytes:
    by_object: dict[str, list[dict[str, Any]]] = {}
    for ev in custody:
        by_object.setdefault(ev["object_id"], []).append(ev)
    events = _Events()
    for r in records:
        device = r.device.get("serial") or "unknown device"
        events.add(
            r,
            "capture",
            r.captured_at_iso,
            f"device:{device}",
            "success" if not r.flags.get("damaged") else "damaged",
            f"time source {r.time_source or 'unknown'}; start {r.start}; end {r.end}",
        )
        for ev in sorted(
            _related(r, by_object), key=lambda e: (e["at"], e["station_id"], e["seq"])
        ):
            details = json.loads(ev["details"]) if ev["details"] else {}
            outcome = "failure" if details.get("ok") is False else "success"
            events.add(
                r,
                event_type(ev["action"]),
                ev["at"],
                ev["actor"],
                outcome,
                f"{ev['action']}: {ev['details']}",
                {"station": ev["station_id"], "seq": ev["seq"], "hash": ev["event_hash"]},
            )
        for f in r.files:
            events.add(
                r,
                "fixity check",
                export["created"],
                f"station:{export['station']}",
                "success",
                f"{f.role} {f.path}: SHA-256 and SM3 of the bytes read from object "
                f"{f.object_key} matched the catalog while written",
            )
        events.add(
            r,
            "export",
            export["created"],
            export["actor"],
            "success",
            f"export {export['uid']} bag {export['bag']} ({export['bag_count']})",
        )
    ET.indent(events.root)
    data: bytes = ET.tostring(events.root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _related(r: RecordInfo, by_object: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The custody events about a record: its own, its access copy's, and its cases'
    events that name it."""
    related = [*by_object.get(r.sha256, [])]
    for f in r.files:
        if f.role == "access":
            related += by_object.get(f.sha256, [])
    for case_number in r.case_numbers:
        related += [
            e
            for e in by_object.get(case_number, [])
            if r.sha256 in e["details"] or str(r.recording_id) in e["details"]
        ]
    return related


class _Events:
    """The <events> document, numbering its events as they are added."""

    def __init__(self) -> None:
        self.root = ET.Element("events", {"format": FORMAT})
        self._n = 0

    def add(
        self,
        obj: RecordInfo,
        etype: str,
        at: str | None,
        agent: str,
        outcome: str,
        detail: str,
        ref: dict[str, Any] | None = None,
    ) -> None:
        self._n += 1
        el = ET.SubElement(
            self.root,
            "event",
            {"id": f"e{self._n}", "type": etype, "object": obj.sha256, "outcome": outcome},
        )
        if at:
            el.set("at", at)
        ET.SubElement(el, "agent").text = _clean(agent)
        if detail:
            ET.SubElement(el, "detail").text = _clean(detail)
        if ref:
            ET.SubElement(el, "custody", {k: str(v) for k, v in ref.items()})
