"""``data/metadata/package.xml``: the package descriptor.

DA/T 48 (EEP) embeds content in XML and covers text and images only, so for audio and
video the descriptor references files by path, size and digests, and carries the
DA/T 63-2017 record fields of each recording. Element names are English; docs/export.md
maps each to its DA/T 63 field (档号, 题名, 时间, 地点, 人物, 摄录者, 保管期限, 密级 ...).
No XML namespace, so any XPath tool reads it without prefixes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from archive_export.bagwriter import FileEntry
from archive_export.records import RecordInfo

FORMAT = "liuhen-package/1"
# Fields a record must carry (DA/T 63 required elements we can always fill) and those
# that should be there when the catalog knows them.
REQUIRED_FIELDS = ("archival-code", "title", "time", "retention", "technical", "file")
RECOMMENDED_FIELDS = ("place", "recorder", "security-class", "device")


def _clean(value: Any) -> str:
    """Text safe for XML 1.0 (no control characters other than tab/newline)."""
    text = "" if value is None else str(value)
    return "".join(c if c in "\t\n" or ord(c) >= 0x20 else f"\\x{ord(c):02x}" for c in text)


def _sub(parent: ET.Element, tag: str, text: Any = None, **attrs: Any) -> ET.Element:
    el = ET.SubElement(
        parent,
        tag,
        {k.replace("_", "-"): _clean(v) for k, v in attrs.items() if v is not None and v != ""},
    )
    if text is not None and text != "":
        el.text = _clean(text)
    return el


def package_xml(
    *,
    export: dict[str, Any],
    cases: Sequence[dict[str, Any]],
    records: Sequence[RecordInfo],
    files: Sequence[FileEntry],
) -> bytes:
    """The descriptor of one bag. ``files`` are every payload file written before it."""
    root = ET.Element("package", {"format": FORMAT})
    _sub(
        root,
        "export",
        id=export["uid"],
        bag=export["bag"],
        bag_count=export["bag_count"],
        created=export["created"],
        station=export["station"],
        actor=export["actor"],
        source_organization=export["organization"],
        fonds=export["fonds"],
        signing_key=export["key_id"],
        scope=export["scope"],
    )
    cases_el = _sub(root, "cases")
    for c in cases:
        _sub(
            cases_el,
            "case",
            c.get("title"),
            number=c["number"],
            unit=c.get("unit"),
            status=c.get("status"),
            retention=c.get("retention"),
            security_class=c.get("security_class"),
            closed_at=c.get("closed_at"),
        )
    records_el = _sub(root, "records", count=len(records))
    for r in records:
        _record_xml(records_el, r)
    files_el = _sub(root, "files", count=len(files), bytes=sum(f.size for f in files))
    for entry in sorted(files, key=lambda e: e.path):
        _sub(
            files_el,
            "file",
            path=entry.path,
            size=entry.size,
            sha256=entry.digests["sha256"],
            sm3=entry.digests["sm3"],
        )
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _record_xml(records_el: ET.Element, r: RecordInfo) -> None:
    """One record: its description, technical metadata and files."""
    rec = _sub(records_el, "record", seq=r.seq, id=r.recording_id, sha256=r.sha256)
    _sub(rec, "archival-code", r.archival_code)
    _sub(rec, "title", r.title)
    _sub(rec, "time", start=r.start, end=r.end, source=r.time_source)
    _sub(rec, "place", r.place)
    people = _sub(rec, "people")
    for p in r.people:
        _sub(people, "person", p.get("name"), number=p.get("number"), role=p.get("role"))
    if r.recorder:
        _sub(rec, "recorder", r.recorder.get("name"), number=r.recorder.get("number"))
    _sub(rec, "retention", r.retention)
    _sub(rec, "security-class", r.security_class)
    for number in r.case_numbers:
        _sub(rec, "case-id", number)
    _sub(rec, "original-name", r.original_name, hex=r.original_name_hex)
    _sub(
        rec,
        "technical",
        media_kind=r.media_kind,
        **{k: v for k, v in r.technical.items() if v is not None},
    )
    if r.device:
        _sub(rec, "device", **r.device)
    if r.chapter:
        _sub(rec, "chapter", **r.chapter)
    for flag, value in sorted((r.flags or {}).items()):
        _sub(rec, "flag", value if not isinstance(value, bool) else "", name=flag)
    for f in r.files:
        _sub(
            rec,
            "file",
            role=f.role,
            path=f.path,
            size=f.size,
            sha256=f.sha256,
            sm3=f.sm3,
            kind=f.kind,
            method=f.method,
        )


# -- reading (the four-properties check) -------------------------------------------------


@dataclass
class PackageDoc:
    records: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, str]] = field(default_factory=list)
    export: dict[str, str] = field(default_factory=dict)


def read_package(data: bytes) -> PackageDoc:
    """Parse a descriptor; raises ``ET.ParseError`` when it is not well-formed XML."""
    root = ET.fromstring(data)
    doc = PackageDoc()
    if root.tag != "package":
        raise ET.ParseError(f"root element is <{root.tag}>, not <package>")
    export = root.find("export")
    doc.export = dict(export.attrib) if export is not None else {}
    for rec in root.iterfind("records/record"):
        item: dict[str, Any] = dict(rec.attrib)
        item["fields"] = {child.tag for child in rec if (child.text or child.attrib)}
        for tag in ("archival-code", "title", "retention", "security-class", "place"):
            el = rec.find(tag)
            item[tag] = (el.text or "") if el is not None else ""
        tech = rec.find("technical")
        item["technical"] = dict(tech.attrib) if tech is not None else {}
        item["files"] = [dict(f.attrib) for f in rec.iterfind("file")]
        chapter = rec.find("chapter")
        item["chapter"] = dict(chapter.attrib) if chapter is not None else None
        doc.records.append(item)
    doc.files = [dict(f.attrib) for f in root.iterfind("files/file")]
    return doc
