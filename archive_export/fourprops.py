"""The four-properties check (四性检测, DA/T 70-2018) of a bundle: authenticity (真实性),
integrity (完整性), usability (可用性) and security (安全性).

It runs on a bag alone (offline: a directory or a ``.tar``) and, when given a catalog
lookup, also compares every record's digests with the catalog. It runs at export, on the
bag being written (the tag manifests and signature do not exist yet and are reported as
"written after this report"), and on demand (``liuhen four-properties``). Every check
reports every problem it finds; each check's status is ``pass``, ``warn``, ``fail`` or
``not-run``. The report is JSON for programs and HTML with Chinese and English labels.
"""

from __future__ import annotations

import html
import json
import platform
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Any, BinaryIO

from archive_export.bagparse import ERROR, LIST_PER_KIND, MAX_LINES, BagInfo, Finding
from archive_export.bagverify import (
    BagReport,
    CustodyResult,
    check_custody_excerpt,
    custody_input,
    custody_within_bounds,
    verify_tree,
)
from archive_export.bagview import BagView
from archive_export.bagwriter import ALGORITHMS, BAGIT_TXT
from archive_export.descriptor import (
    RECOMMENDED_FIELDS,
    REQUIRED_FIELDS,
    PackageDoc,
    read_package,
)
from archive_export.handover import read_handover
from archive_export.msg import Msg, in_chinese, shown
from archive_export.parallel_hash import Item, hash_items
from config.i18n import N_, language
from config.settings import CHINA_STANDARD_TIME
from config.timetext import show_time
from formats import mp4box

FORMAT = "liuhen-four-properties/1"
METADATA = "data/metadata/"
PACKAGE = METADATA + "package.xml"
HANDOVER = METADATA + "handover.csv"
CUSTODY = METADATA + "custody.jsonl"
KEYS = METADATA + "keys.json"
ANCHORS = METADATA + "anchors.jsonl"
CUSTODY_FILES = (CUSTODY, KEYS, ANCHORS)
# Verifier findings that say a tag file is not the one the tag manifests (so the
# signature) cover: authenticity of the bag's structure (A1), whichever file it is.
TAG_FIXITY_KINDS = frozenset(
    {"checksum-mismatch", "unreadable", "changed-during-verification", "not-verified", "too-large"}
)
REPORT_JSON = METADATA + "four-properties.json"
REPORT_HTML = METADATA + "four-properties.html"
# Files the hand-over list cannot name: itself and what is written after it.
NOT_IN_HANDOVER = {HANDOVER, REPORT_JSON, REPORT_HTML}

PROPERTIES = {
    "authenticity": ("真实性", "Authenticity"),
    "integrity": ("完整性", "Integrity"),
    "usability": ("可用性", "Usability"),
    "security": ("安全性", "Security"),
}
STATUS_LABELS = {
    "pass": ("通过", "pass"),
    "warn": ("警告", "warning"),
    "fail": ("不通过", "fail"),
    "not-run": ("未检测", "not run"),
}
_RANK = {"not-run": 0, "pass": 1, "warn": 2, "fail": 3}

# GB/T 18894-2016 archival formats for audio/video records and photos.
ALLOWED: dict[str, dict[str, set[str] | None]] = {
    "video": {
        "MP4": {"h264", "mpeg2video", "mpeg4"},
        "MPG": {"mpeg2video", "mpeg1video"},
        "AVI": {"h264", "mpeg2video", "mpeg4", "mjpeg"},
    },
    "audio": {"WAV": None, "MP3": None},
    "image": {"JPEG": None, "TIFF": None},
}

# package.xml is parsed into a tree; past this many elements it is "too large" (about
# twenty elements a record: room for some 25,000 records).
MAX_XML_ELEMENTS = 500_000

DigestLookup = Callable[[str], "tuple[str, int] | None"]  # sha256 -> (sm3, size)


def _level(problem: str, level: str) -> str:
    """The problem, remembering whether it failed the check or only warned (a check that
    fails may also hold warnings; the JSON keeps its one list of problems)."""
    if isinstance(problem, Msg):
        problem.level = level
    return problem


@dataclass
class Check:
    id: str
    prop: str
    zh: str
    en: str
    status: str = "pass"
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    more: int = 0  # problems counted but not listed (see LIST_PER_KIND)

    def fail(self, problem: str) -> None:
        self._note(_level(problem, "fail"))
        self.status = "fail"

    def warn(self, problem: str) -> None:
        self._note(_level(problem, "warn"))
        if self.status != "fail":
            self.status = "warn"

    def _note(self, problem: str) -> None:
        # A hostile bag can produce a problem per file or per line: list the first ones.
        if len(self.problems) < LIST_PER_KIND:
            self.problems.append(problem)
        else:
            self.more += 1

    def as_dict(self) -> dict[str, Any]:
        problems = self.problems + (
            [Msg(N_("and {count:,} more like these (not listed)"), count=self.more)]
            if self.more
            else []
        )
        return {
            "id": self.id,
            "property": self.prop,
            "label_zh": self.zh,
            "label_en": self.en,
            "status": self.status,
            "detail": self.detail,
            "problems": problems,
            "notes": self.notes,
        }


@dataclass
class Options:
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    # keyframes: demux every packet, decode video key frames and all audio (catches a
    # broken container or stream, at a fraction of a full decode's time); full: decode
    # every frame; none: record the decode check as not run (very large exports).
    decode: str = "keyframes"
    decode_timeout_s: float = 300.0
    clamscan: str | None = None  # None: found on PATH, or the scan is recorded as not run


@dataclass
class _Checks:
    """The report's checks, in report order (each property's checks together)."""

    structure: Check
    payload: Check
    cat: Check
    custody: Check
    probe_match: Check
    handover: Check
    descriptor: Check
    fields_: Check
    gaps: Check
    decode: Check
    formats: Check
    crypt: Check
    env: Check
    virus: Check
    contents: Check

    def all(self) -> list[Check]:
        return [getattr(self, f.name) for f in dataclass_fields(self)]


def _new_checks() -> _Checks:
    c = Check  # short alias for the table below
    return _Checks(
        structure=c("A1", "authenticity", "包结构与签名", "bag structure and signature"),
        payload=c(
            "A2", "authenticity", "载荷摘要与清单一致", "payload digests match the manifests"
        ),
        cat=c("A3", "authenticity", "摘要与目录库一致", "digests match the catalog"),
        custody=c("A4", "authenticity", "保管链事件签名", "custody events and signatures"),
        probe_match=c(
            "A5",
            "authenticity",
            "元数据与文件属性一致 (ffprobe)",
            "metadata matches the files (ffprobe)",
        ),
        handover=c(
            "I1", "integrity", "移交清单：数量、字节、摘要", "hand-over list: count, bytes, digests"
        ),
        descriptor=c(
            "I2", "integrity", "包描述文件与载荷一致", "package descriptor matches the payload"
        ),
        fields_=c("I3", "integrity", "必备元数据项齐全", "required metadata present"),
        gaps=c("I4", "integrity", "编号连续无缺漏", "no gaps in numbering"),
        decode=c("U1", "usability", "文件可正常解码", "every media file decodes"),
        formats=c("U2", "usability", "归档格式符合 GB/T 18894", "archival formats (GB/T 18894)"),
        crypt=c("U3", "usability", "无加密、无专有压缩", "no encryption or proprietary packing"),
        env=c("U4", "usability", "软件环境已记录", "software environment recorded"),
        virus=c("S1", "security", "病毒检测", "virus scan"),
        contents=c("S2", "security", "包内无异常文件", "no unexpected entries in the bag"),
    )


def check_bag(
    bag: BagView,
    *,
    in_progress: bool = False,
    known_digests: Mapping[str, dict[str, str]] | None = None,
    catalog: DigestLookup | None = None,
    options: Options | None = None,
) -> dict[str, Any]:
    """Run every check and return the report (see the module doc).

    ``in_progress``: the bag is being exported; its tag files are written after this.
    ``known_digests``: path -> digests already computed (at export, while writing), so
    payload files are not read again for hashing.
    """
    opts = options or Options()
    files = bag.files()
    chk = _new_checks()
    payload_files = {p: s for p, s in files.items() if p.startswith("data/")}
    # Authenticity and integrity of the bag as BagIt: the verifier's (`liuhen verify`),
    # not checked again here; at export the tag files do not exist yet.
    verified = None if in_progress else _verify(bag)
    digests = _payload_digests(bag, payload_files, known_digests, verified, chk.payload)
    if verified is None:
        _not_signed_yet(chk)
    else:
        _take_verification(bag, files, verified, chk)
    doc = _read_descriptor(bag, files, chk.descriptor)
    if catalog is None:
        chk.cat.status = "not-run"
        chk.cat.detail = Msg(N_("no catalog given (offline check)"))
    elif doc is not None:
        _check_catalog(doc, digests, catalog, chk.cat)
    _check_custody(bag, files, doc, digests, verified, chk.custody)
    _integrity(bag, files, digests, doc, chk)
    file_reports = _usability(bag, files, doc, opts, chk)
    _security(bag, opts, payload_files, chk)
    return _report(bag, chk, in_progress, file_reports, payload_files)


def _integrity(
    bag: BagView,
    files: Mapping[str, int],
    digests: Mapping[str, dict[str, str]],
    doc: PackageDoc | None,
    chk: _Checks,
) -> None:
    if _within_lines(bag, files, HANDOVER, chk.handover):
        _check_handover(bag, files, digests, chk.handover)
    if doc is not None:
        _check_descriptor(doc, files, digests, chk.descriptor)
        _check_fields(doc, chk.fields_)
        _check_gaps(doc, chk.gaps)


def _usability(
    bag: BagView, files: Mapping[str, int], doc: PackageDoc | None, opts: Options, chk: _Checks
) -> list[dict[str, Any]]:
    """Usability, and the ffprobe side of authenticity: every media file the descriptor
    lists, inspected once; the software environment. The files' reports are returned."""
    media = _media_files(doc, files)
    file_reports: list[dict[str, Any]] = []
    for path, role, record in media:
        if path not in files:
            continue  # reported missing by the descriptor check
        info = _inspect(bag, path, opts, record)
        info.update(path=path, role=role)
        file_reports.append(info)
        _judge_media(info, role, record, opts, chk)
    chk.decode.detail = {
        "full": "every frame of every stream decoded",
        "none": "not run (--decode none)",
    }.get(opts.decode, "every packet demuxed, video key frames and all audio decoded")
    if opts.decode == "none":
        chk.decode.status = "not-run"
    if not media:
        for c in (chk.decode, chk.formats, chk.crypt, chk.probe_match):
            c.status, c.detail = "not-run", "no media files listed in the descriptor"
    chk.env.notes = [
        f"ffmpeg: {_tool_version(opts.ffmpeg)}",
        f"python: {sys.version.split()[0]}",
        f"platform: {platform.platform()}",
    ]
    chk.env.detail = "; ".join(chk.env.notes)
    return file_reports


def _judge_media(
    info: dict[str, Any], role: str, record: dict[str, Any] | None, opts: Options, chk: _Checks
) -> None:
    path = info["path"]
    if info["decode"] == "not-media":
        chk.formats.warn(
            Msg(N_("{path}: not an audio, video or image file (kept as recorded)"), path=path)
        )
        return
    if info["decode"] == "fail":
        chk.decode.fail(
            Msg(
                N_("{path}: does not decode: {decode_error}"),
                path=path,
                decode_error=info["decode_error"],
            )
        )
    elif info["decode"] == "timeout":
        chk.decode.warn(
            Msg(
                N_("{path}: decoding did not finish in {decode_timeout_s:.0f} s"),
                path=path,
                decode_timeout_s=opts.decode_timeout_s,
            )
        )
    if info.get("encrypted"):
        chk.crypt.fail(Msg(N_("{path}: {encrypted}"), path=path, encrypted=info["encrypted"]))
    _check_format(info, role, record, chk.formats)
    if record is not None and role == "original":
        _compare_probe(record, info, chk.probe_match)


def _security(bag: BagView, opts: Options, payload_files: Mapping[str, int], chk: _Checks) -> None:
    _virus_scan(bag, opts, chk.virus)
    for odd in bag.odd_entries():
        chk.contents.fail(
            Msg(
                N_("{odd}: not a regular file inside the bag (link, device or escaping path)"),
                odd=odd,
            )
        )
    for path in payload_files:
        if not path.startswith(("data/originals/", "data/access/", "data/metadata/")):
            chk.contents.warn(
                Msg(N_("{path}: outside data/originals, data/access and data/metadata"), path=path)
            )


def _report(
    bag: BagView,
    chk: _Checks,
    in_progress: bool,
    file_reports: list[dict[str, Any]],
    payload_files: Mapping[str, int],
) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, (zh, en) in PROPERTIES.items():
        mine = [c for c in chk.all() if c.prop == key]
        status = max((c.status for c in mine), key=lambda s: _RANK[s])
        props[key] = {
            "label_zh": zh,
            "label_en": en,
            "status": status,
            "checks": [c.as_dict() for c in mine],
        }
    ok = all(p["status"] != "fail" for p in props.values())
    return {
        "format": FORMAT,
        "bag": bag.name,
        "location": str(bag.location),
        "mode": "export" if in_progress else "on-demand",
        "checked_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ok": ok,
        "properties": props,
        "files": file_reports,
        "payload": {"files": len(payload_files), "bytes": sum(payload_files.values())},
    }


# -- authenticity ---------------------------------------------------------------------------


def _verify(bag: BagView) -> BagReport:
    """The bag verified as `liuhen verify` does, held to what a 留痕 bag carries."""
    tree = bag.tree()
    report = BagReport(str(bag.location), "tar" if tree.tar is not None else "directory")
    verify_tree(tree, report, as_liuhen=True)
    for f in report.findings:
        if f.kind == "too-large" and f.path in tree.files:
            bag.check_size(f.path)  # a bag handed over: too large is the command's error
    return report


def _payload_digests(
    bag: BagView,
    payload_files: Mapping[str, int],
    known: Mapping[str, dict[str, str]] | None,
    verified: BagReport | None,
    chk: Check,
) -> dict[str, dict[str, str]]:
    """SHA-256, SHA-512 and SM3 of every payload file, each read once: as written (at
    export), as the verifier computed them, or hashed here (a file no manifest lists)."""
    digests = {p: dict(d) for p, d in (known or {}).items() if p in payload_files}
    if verified is not None:
        for p, d in verified.digests.items():
            if p in payload_files and p not in digests and all(a in d for a in ALGORITHMS):
                digests[p] = dict(d)
    hashed, unreadable = _hash_all(bag, [p for p in sorted(payload_files) if p not in digests])
    digests.update(hashed)
    if verified is None:  # (otherwise the verifier reported it)
        for path, error in unreadable.items():
            chk.fail(Msg(N_("{path}: cannot be read: {error}"), path=path, error=error))
    return digests


def _hash_all(bag: BagView, paths: list[str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """SHA-256, SHA-512 and SM3 of ``paths``, on every core (the verifier's hasher: big
    files one job per algorithm, longest first; never memory-mapped, so a file truncated
    meanwhile is reported as changed instead of killing the process)."""
    if not paths:
        return {}, {}
    tree = bag.tree()
    outcomes = hash_items([Item(p, tree.source(p), ALGORITHMS) for p in paths])
    out: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    for p, o in outcomes.items():
        if o.error is None:
            out[p] = o.digests
        else:
            errors[p] = o.error
    return out, errors


def _not_signed_yet(chk: _Checks) -> None:
    chk.structure.status = "not-run"
    chk.structure.detail = Msg(
        N_(
            "the tag manifests and the Ed25519 signature are written after this report; check "
            "them with 'liuhen verify' or VERIFY.txt"
        )
    )
    chk.payload.detail = Msg(N_("digests computed while each file was written"))


def _check_of(f: Finding, chk: _Checks) -> Check:
    """Which check a verifier finding belongs to: the custody excerpt (A4); the payload
    and its manifests, their format included (A2); or the bag's structure and signature,
    the tag files' digests included (A1)."""
    if f.kind.startswith("custody") or (
        f.path in CUSTODY_FILES and f.kind in ("too-large", "unreadable")
    ):
        return chk.custody
    if f.path.startswith("data/") or f.kind == "missing-payload-dir":
        return chk.payload
    if f.kind == "missing-manifest":
        return chk.structure if f.path.startswith("tagmanifest-") else chk.payload
    if f.path.startswith("manifest-") and f.kind not in TAG_FIXITY_KINDS:
        return chk.payload  # how a payload manifest is written, not whether it was signed
    return chk.structure


def _take_verification(
    bag: BagView, files: Mapping[str, int], verified: BagReport, chk: _Checks
) -> None:
    """The verifier's findings as the authenticity checks' problems (the bag's odd
    entries are the security check's, S2), and DA/T 70's own demands of the bag."""
    entries = {id(f) for f in bag.tree().findings}
    for f in verified.findings:
        if id(f) in entries:
            continue
        target = _check_of(f, chk)
        if f.severity == ERROR:
            target.fail(f.message())
        else:
            target.warn(f.message())
    _check_profile(bag, files, verified.info, chk.structure)
    key_id = verified.signature.get("key_id")
    if key_id and verified.signature.get("status") == "valid":
        chk.structure.notes.append(Msg(N_("signature by {key_id} verifies"), key_id=key_id))
    if key_id:
        chk.structure.detail = Msg(N_("signing key {key_id}"), key_id=key_id)
    payload = [p for p in files if p.startswith("data/")]
    chk.payload.detail = Msg(
        N_("{count} payload files hashed with {algorithms}"),
        count=len(payload),
        algorithms=", ".join(ALGORITHMS),
    )


def _check_profile(bag: BagView, files: Mapping[str, int], info: BagInfo, chk: Check) -> None:
    """What a hand-over bag must be beyond what the verifier asks of a 留痕 bag: BagIt 1.0
    in UTF-8 exactly, and who made it, for what and when."""
    if "bagit.txt" in files and bag.read("bagit.txt") != BAGIT_TXT:
        chk.fail(
            Msg(
                N_(
                    "bagit.txt is not exactly 'BagIt-Version: 1.0' / "
                    "'Tag-File-Character-Encoding: UTF-8'"
                )
            )
        )
    for label in ("Source-Organization", "External-Identifier", "Bagging-Date"):
        if not info.get(label):
            chk.fail(Msg(N_("bag-info.txt lacks {label}"), label=label))


def _within_lines(bag: BagView, files: Mapping[str, int], path: str, chk: Check) -> bool:
    """False (the check failed, naming the file) for a file of more than MAX_LINES lines,
    which the check would otherwise split into a list of that many lines."""
    if path not in files:
        return True
    data = bag.read(path)
    lines = data.count(b"\n") + data.count(b"\r")
    if lines <= MAX_LINES:
        return True
    chk.fail(
        Msg(
            N_(
                "{path}: invalid: {lines:,} lines, more than the {max_lines:,} read here (too "
                "large); not checked"
            ),
            path=path,
            lines=lines,
            max_lines=MAX_LINES,
        )
    )
    return False


def _read_descriptor(bag: BagView, files: Mapping[str, int], chk: Check) -> PackageDoc | None:
    if PACKAGE not in files:
        chk.fail(Msg(N_("{file} is missing"), file=PACKAGE))
        return None
    data = bag.read(PACKAGE)
    if data.count(b"<") > MAX_XML_ELEMENTS:
        # ElementTree holds every element (a few hundred bytes each).
        chk.fail(
            Msg(
                N_("{file}: invalid: more than {limit:,} elements (too large); not read"),
                file=PACKAGE,
                limit=MAX_XML_ELEMENTS,
            )
        )
        return None
    try:
        return read_package(data)
    except ET.ParseError as exc:
        chk.fail(Msg(N_("{file} is not well-formed XML: {exc}"), file=PACKAGE, exc=exc))
        return None


def _check_catalog(
    doc: PackageDoc, digests: Mapping[str, dict[str, str]], lookup: DigestLookup, chk: Check
) -> None:
    n = 0
    for rec in doc.records:
        for f in rec["files"]:
            known = lookup(f.get("sha256", ""))
            n += 1
            if known is None:
                chk.fail(
                    Msg(
                        N_("{path}: SHA-256 {sha256} is not in the catalog"),
                        path=f.get("path"),
                        sha256=f.get("sha256"),
                    )
                )
                continue
            sm3, size = known
            actual = digests.get(f.get("path", ""))
            if actual is not None and actual["sha256"] != f.get("sha256"):
                chk.fail(
                    Msg(
                        N_("{path}: the file's SHA-256 {actual} is not the catalog's {sha256}"),
                        path=f.get("path"),
                        actual=actual["sha256"],
                        sha256=f.get("sha256"),
                    )
                )
            if actual is not None and actual["sm3"] != sm3:
                chk.fail(
                    Msg(
                        N_("{path}: the file's SM3 {actual} is not the catalog's {sm3}"),
                        path=f.get("path"),
                        actual=actual["sm3"],
                        sm3=sm3,
                    )
                )
            if str(size) != f.get("size"):
                chk.fail(
                    Msg(
                        N_("{path}: size {described} in the descriptor, {size} in the catalog"),
                        path=f.get("path"),
                        described=f.get("size"),
                        size=size,
                    )
                )
    chk.detail = Msg(N_("{n} files compared with the catalog (SHA-256, SM3, size)"), n=n)


def _check_custody(
    bag: BagView,
    files: Mapping[str, int],
    doc: PackageDoc | None,
    digests: Mapping[str, dict[str, str]],
    verified: BagReport | None,
    chk: Check,
) -> None:
    """The custody excerpt as the verifier checks it (the rule of catalog.chainrule, its
    findings taken above); at export, the verifier's custody check alone, against the
    digests as written. Then: every record is named by a custody event."""
    if CUSTODY not in files or KEYS not in files:
        chk.fail(Msg(N_("{custody} or {keys} is missing"), custody=CUSTODY, keys=KEYS))
        return
    if verified is None:
        result = _custody_at_export(bag, digests, chk)
        if result is None:
            return
        summary, objects = result.summary, result.objects
    else:
        summary, objects = verified.custody, verified.custody_objects
        if not summary:
            return  # not checked (too large, unreadable): reported among the findings
    if doc is not None:
        for rec in doc.records:
            if rec.get("sha256") not in objects:
                chk.fail(
                    Msg(
                        N_("record {seq} ({sha256}): no custody event in {file}"),
                        seq=rec.get("seq"),
                        sha256=rec.get("sha256"),
                        file=CUSTODY,
                    )
                )
    chk.detail = Msg(
        N_("{events} events, {keys} keys"), events=summary["events"], keys=summary["keys"]
    )
    if summary["chain_heads"]:
        chk.detail += f", {summary['chain_heads']} signed chain heads"


def _custody_at_export(
    bag: BagView, digests: Mapping[str, dict[str, str]], chk: Check
) -> CustodyResult | None:
    """The verifier's custody check of the bag being written (its manifests are not
    written yet: the events are compared with the digests computed while writing)."""
    tree = bag.tree()
    scratch = BagReport(str(bag.location), "directory", liuhen=True)
    result = None
    if custody_within_bounds(tree, scratch):
        inp = custody_input(
            tree,
            scratch,
            {p: d["sha256"] for p, d in digests.items()},
            {p: d["sm3"] for p, d in digests.items()},
            None,
        )
        if inp is not None:
            result = check_custody_excerpt(inp)
            scratch.findings.extend(result.findings)
    for f in scratch.findings:
        if f.severity == ERROR:
            chk.fail(f.message())
        else:
            chk.warn(f.message())
    return result


# -- integrity ----------------------------------------------------------------------------


def _check_handover(
    bag: BagView, files: Mapping[str, int], digests: Mapping[str, dict[str, str]], chk: Check
) -> None:
    if HANDOVER not in files:
        chk.fail(Msg(N_("{file} is missing"), file=HANDOVER))
        return
    h = read_handover(bag.read(HANDOVER))
    for p in h.problems:
        chk.fail(Msg(N_("{file}: {p}"), file=HANDOVER, p=p))
    listed = {row[0] for row in h.rows}
    for path, size, sha256, sm3 in h.rows:
        if path not in files:
            chk.fail(Msg(N_("{path}: in the hand-over list but missing from the bag"), path=path))
            continue
        if files[path] != size:
            chk.fail(
                Msg(
                    N_("{path}: {size} bytes, the hand-over list says {listed}"),
                    path=path,
                    size=files[path],
                    listed=size,
                )
            )
        got = digests.get(path)
        if got and (got["sha256"] != sha256 or got["sm3"] != sm3):
            chk.fail(Msg(N_("{path}: digests differ from the hand-over list"), path=path))
    expected = {p for p in files if p.startswith("data/")} - NOT_IN_HANDOVER
    for path in sorted(expected - listed):
        chk.fail(Msg(N_("{path}: in the bag but not in the hand-over list"), path=path))
    if h.total_files is not None and h.total_files != len(h.rows):
        chk.fail(
            Msg(
                N_("合计 says {total_files} files, the list has {n_rows}"),
                total_files=h.total_files,
                n_rows=len(h.rows),
            )
        )
    if h.total_bytes is not None and h.total_bytes != sum(r[1] for r in h.rows):
        chk.fail(
            Msg(
                N_("合计 says {total_bytes} bytes, the rows add up to {rows}"),
                total_bytes=h.total_bytes,
                rows=sum(r[1] for r in h.rows),
            )
        )
    present = sum(files.get(r[0], 0) for r in h.rows)
    chk.detail = Msg(
        N_("{n_rows} files, {total_bytes} bytes listed; {present} bytes present"),
        n_rows=len(h.rows),
        total_bytes=h.total_bytes,
        present=present,
    )


def _check_descriptor(
    doc: PackageDoc, files: Mapping[str, int], digests: Mapping[str, dict[str, str]], chk: Check
) -> None:
    described: set[str] = set()
    for rec in doc.records:
        for f in rec["files"]:
            path = f.get("path", "")
            described.add(path)
            if path not in files:
                chk.fail(
                    Msg(
                        N_("{path}: record {seq} lists it, the bag lacks it"),
                        path=path,
                        seq=rec.get("seq"),
                    )
                )
                continue
            if str(files[path]) != f.get("size"):
                chk.fail(
                    Msg(
                        N_("{path}: {size} bytes, the descriptor says {described}"),
                        path=path,
                        size=files[path],
                        described=f.get("size"),
                    )
                )
            got = digests.get(path)
            if got and (got["sha256"] != f.get("sha256") or got["sm3"] != f.get("sm3")):
                chk.fail(Msg(N_("{path}: digests differ from the descriptor"), path=path))
    for f in doc.files:
        path = f.get("path", "")
        described.add(path)
        if path not in files:
            chk.fail(Msg(N_("{path}: listed in the descriptor, the bag lacks it"), path=path))
        elif str(files[path]) != f.get("size"):
            chk.fail(
                Msg(
                    N_("{path}: {size} bytes, the descriptor says {described}"),
                    path=path,
                    size=files[path],
                    described=f.get("size"),
                )
            )
    for path in sorted(files):
        if path.startswith(("data/originals/", "data/access/")) and path not in described:
            chk.fail(Msg(N_("{path}: a media file the descriptor does not describe"), path=path))
    chk.detail = Msg(
        N_("{n_records} records, {n_described} files described"),
        n_records=len(doc.records),
        n_described=len(described),
    )


# What fills each recommended field, for the warning that finds it empty.
FILLED_BY = {
    "place": N_("'liuhen case action NUMBER ACTION --place …' (the enforcement action's place)"),
    "recorder": N_("'liuhen device assign SERIAL OFFICER --start …' (who carried the recorder)"),
    "security-class": N_(
        "'liuhen case update NUMBER --security-class …', or 'liuhen export --security-class …' "
        "for recordings in no case"
    ),
    "device": N_("'liuhen device add SERIAL --model …' (the recorder's registration)"),
}


def _record_name(rec: Mapping[str, Any]) -> str:
    """A record as people find it: its number and its original's file name."""
    files = rec.get("files") or []
    name = files[0].get("path", "").rsplit("/", 1)[-1] if files else ""
    return f"{rec.get('seq')} ({name})" if name else str(rec.get("seq"))


def _check_fields(doc: PackageDoc, chk: Check) -> None:
    """Required fields missing fail the check; recommended ones empty only warn, naming
    the records and what fills the field (a bag without them is still a valid bag)."""
    empty: dict[str, list[str]] = {}
    for rec in doc.records:
        have = set(rec["fields"])
        if rec.get("retention"):
            have.add("retention")
        missing = [f for f in REQUIRED_FIELDS if f not in have]
        if missing:
            chk.fail(
                Msg(
                    N_("record {record}: required field(s) missing: {missing}"),
                    record=_record_name(rec),
                    missing=", ".join(missing),
                )
            )
        for f in RECOMMENDED_FIELDS:
            if f not in have:
                empty.setdefault(f, []).append(_record_name(rec))
    for f, names in empty.items():
        # One line per field: a case without places would otherwise repeat it per record.
        listed = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
        chk.warn(
            Msg(
                N_(
                    "recommended field '{field}' is empty in {count} of {total} records: "
                    "{records}; fill it with {option}"
                ),
                field=f,
                count=len(names),
                total=len(doc.records),
                records=listed,
                option=Msg(FILLED_BY.get(f, N_("the catalog"))),
            )
        )
    chk.detail = Msg(
        N_("required: {required}; recommended: {recommended}"),
        required=", ".join(REQUIRED_FIELDS),
        recommended=", ".join(RECOMMENDED_FIELDS),
    )


def _check_gaps(doc: PackageDoc, chk: Check) -> None:
    seqs = sorted(int(r.get("seq", 0)) for r in doc.records)
    # Records are numbered across an export; a split export's later bags start further on.
    first = (
        1 if doc.export.get("bag-count", "1 of 1").startswith("1 of") else (seqs[0] if seqs else 1)
    )
    if seqs != list(range(first, first + len(seqs))):
        chk.fail(
            Msg(
                N_("record numbers are not {first}..{last} without gaps: {seqs}"),
                first=first,
                last=first + len(seqs) - 1,
                seqs=seqs[:20],
            )
        )
    groups: dict[str, list[int]] = {}
    for r in doc.records:
        ch = r.get("chapter")
        if ch and ch.get("group") and ch.get("seq"):
            groups.setdefault(ch["group"], []).append(int(ch["seq"]))
    for group, segs in sorted(groups.items()):
        segs.sort()
        if segs != list(range(segs[0], segs[0] + len(segs))):
            chk.warn(
                Msg(
                    N_(
                        "chapter group {group}: segments {segs} are not consecutive (a segment of "
                        "a split recording is not in this bag)"
                    ),
                    group=group,
                    segs=segs,
                )
            )
    chk.detail = Msg(
        N_("{n_seqs} records numbered; {n_groups} split recording(s)"),
        n_seqs=len(seqs),
        n_groups=len(groups),
    )


# -- usability ----------------------------------------------------------------------------


def _media_files(
    doc: PackageDoc | None, files: Mapping[str, int]
) -> list[tuple[str, str, dict[str, Any] | None]]:
    if doc is None:
        return [
            (p, "original" if p.startswith("data/originals/") else "access", None)
            for p in sorted(files)
            if p.startswith(("data/originals/", "data/access/"))
        ]
    return [
        (f.get("path", ""), f.get("role", ""), rec) for rec in doc.records for f in rec["files"]
    ]


def _sniff(head: bytes) -> str | None:
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "MOV"
        if brand in (b"M4A ", b"M4B "):
            return "M4A"
        return "MP4"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"\x00\x00\x01\xba":
        return "MPG"
    if head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47":
        return "MPEG-TS"
    if head[:4] == b"PK\x03\x04" or head[:6] == b"7z\xbc\xaf\x27\x1c" or head[:4] == b"Rar!":
        return "ARCHIVE"
    return None


def _inspect(
    bag: BagView, path: str, opts: Options, record: dict[str, Any] | None
) -> dict[str, Any]:
    with bag.open(path) as f:
        head = f.read(512)
        container = _sniff(head)
        encrypted = None
        if container in ("MP4", "MOV", "M4A"):
            encrypted = _mp4_encryption(f)
        elif container == "ARCHIVE":
            encrypted = "an archive (possibly encrypted or proprietary packing), not a media file"
    info: dict[str, Any] = {"container": container, "encrypted": encrypted}
    kind = (record or {}).get("technical", {}).get("media-kind")
    if container is None and kind not in ("video", "audio", "image"):
        # Neither the bytes nor the catalog's probe say media (a device info file, notes):
        # nothing to decode; the format check reports it.
        info.update(decode="not-media", decode_error="", allowed_format=False)
        return info
    url = bag.media_url(path)
    info.update(_ffprobe(url, opts, path))
    info["decode"], info["decode_error"] = _decode(url, opts, path)
    return info


# -- MP4 encryption, read with the project's one box walker (formats.mp4box) ------------

ENCRYPTED_ENTRIES = {b"encv", b"enca", b"enct", b"encs", b"drms", b"drmi"}
_CONTAINERS = frozenset(
    {
        b"moov",
        b"trak",
        b"mdia",
        b"minf",
        b"stbl",
        b"mvex",
        b"edts",
        b"udta",
        b"moof",
        b"traf",
        b"dinf",
    }
)


def _mp4_encryption(f: BinaryIO) -> str | None:
    """The reason an MP4 is encrypted (encv/enca sample entries, pssh/sinf boxes), or None."""
    for box in mp4box.walk(f, fourcc_only=False):
        if box.type == b"moov" and box.size <= 256 << 20:
            f.seek(box.start)
            found = _scan(f.read(box.size))
            if found:
                return f"encrypted: '{found}' box in moov (DRM or Common Encryption)"
        if box.type in (b"pssh", b"sinf"):
            return f"encrypted: top-level '{box.name}' box"
    return None


def _scan(moov: bytes) -> str | None:
    """The first encryption box under a moov, or an encrypted sample entry's type."""
    root = next(mp4box.walk(moov, fourcc_only=False), None)
    if root is None:
        return None
    for box in mp4box.walk_tree(
        moov, root.payload, root.end, containers=_CONTAINERS, fourcc_only=False
    ):
        if box.type in (b"pssh", b"sinf", b"tenc", b"schm"):
            return box.name
        if box.type == b"stsd":  # version/flags and the entry count, then the entries
            for entry in mp4box.walk(moov, box.payload + 8, box.end, fourcc_only=False):
                if entry.type in ENCRYPTED_ENTRIES:
                    return entry.name
    return None


def _ffprobe(url: str, opts: Options, path: str) -> dict[str, Any]:
    cmd = [opts.ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", url]
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"probe_error": f"ffprobe: {exc}"}
    if proc.returncode != 0:
        return {"probe_error": _one_line(proc.stderr, url, path)}
    data = json.loads(proc.stdout or b"{}")
    fmt = data.get("format", {})
    out: dict[str, Any] = {
        "format_name": fmt.get("format_name"),
        "duration_s": _float(fmt.get("duration")),
    }
    for s in data.get("streams", []):
        kind = s.get("codec_type")
        if kind == "video" and "video_codec" not in out:
            out.update(
                video_codec=s.get("codec_name"), width=s.get("width"), height=s.get("height")
            )
        elif kind == "audio" and "audio_codec" not in out:
            out.update(audio_codec=s.get("codec_name"), sample_rate=_int(s.get("sample_rate")))
    return out


def _decode(url: str, opts: Options, path: str) -> tuple[str, str]:
    if opts.decode == "none":
        return "not-run", ""
    cmd = [opts.ffmpeg, "-nostdin", "-hide_banner", "-v", "error"]
    if opts.decode != "full":
        cmd += ["-skip_frame", "nokey"]
    cmd += ["-i", url, "-map", "0", "-f", "null", "-"]
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=opts.decode_timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout", ""
    except OSError as exc:
        return "fail", f"cannot run ffmpeg: {exc}"
    err = _one_line(proc.stderr, url, path)
    if proc.returncode != 0 or err:
        return "fail", err or f"ffmpeg exit status {proc.returncode}"
    return "pass", ""


def _check_format(
    info: dict[str, Any], role: str, record: dict[str, Any] | None, chk: Check
) -> None:
    path = info["path"]
    container = info.get("container")
    kind = None
    if info.get("video_codec") and container not in ("JPEG", "TIFF"):
        kind = "video"
    elif info.get("audio_codec"):
        kind = "audio"
    elif container in ("JPEG", "TIFF"):
        kind = "image"
    allowed = False
    why = f"container {container or 'unknown'}"
    if info.get("probe_error"):
        why += " (unreadable: ffprobe fails on it)"
    if kind and container in ALLOWED[kind]:
        codecs = ALLOWED[kind][container]
        allowed = codecs is None or info.get("video_codec") in codecs
        why = f"{container} with {info.get('video_codec') or info.get('audio_codec') or ''}"
    info["allowed_format"] = allowed
    if allowed:
        return
    access = None
    if record is not None and role == "original":
        access = next((f.get("path") for f in record["files"] if f.get("role") == "access"), None)
    if access:
        chk.notes.append(
            Msg(
                N_(
                    "{path}: {why} is not a GB/T 18894 format; its access copy {access} is in the "
                    "bag"
                ),
                path=path,
                why=why,
                access=access,
            )
        )
    elif role == "original":
        chk.warn(
            Msg(
                N_(
                    "{path}: {why} is not a GB/T 18894 archival format and no access copy is in "
                    "the bag (export with --with-access)"
                ),
                path=path,
                why=why,
            )
        )
    else:
        chk.warn(
            Msg(
                N_("{path}: access copy in {why}, not a GB/T 18894 archival format"),
                path=path,
                why=why,
            )
        )


def _compare_probe(record: dict[str, Any], info: dict[str, Any], chk: Check) -> None:
    tech = record.get("technical") or {}
    path = info["path"]
    if info.get("probe_error"):
        if tech.get("probe-error") or tech.get("container"):
            # The catalog's probe also failed (a damaged original): consistent, but say so.
            chk.notes.append(
                Msg(
                    N_("{path}: ffprobe cannot read it: {probe_error}"),
                    path=path,
                    probe_error=info["probe_error"][:200],
                )
            )
        return
    for key, mine in (
        ("video-codec", "video_codec"),
        ("audio-codec", "audio_codec"),
        ("width", "width"),
        ("height", "height"),
    ):
        want = tech.get(key)
        got = info.get(mine)
        if want not in (None, "") and str(got) != str(want):
            chk.fail(
                Msg(
                    N_("{path}: {key} is {got} in the file, {want} in the descriptor"),
                    path=path,
                    key=key,
                    got=got,
                    want=want,
                )
            )
    want_d = _float(tech.get("duration-s"))
    got_d = info.get("duration_s")
    if want_d is not None and got_d is not None and abs(want_d - got_d) > 0.5:
        chk.fail(
            Msg(
                N_("{path}: duration {got_d:.2f} s in the file, {want_d:.2f} s in the descriptor"),
                path=path,
                got_d=got_d,
                want_d=want_d,
            )
        )


def _one_line(stderr: bytes, url: str, path: str) -> str:
    """ffmpeg's complaint on one line, naming the file by its bag path rather than where
    it happened to be read (a temporary name at export, a tar byte range)."""
    text = " / ".join(
        x.strip() for x in stderr.decode("utf-8", "replace").splitlines() if x.strip()
    )
    text = re.sub(r" @ 0x[0-9a-f]+\]", "]", text.replace(url, path))
    return text[-400:]


@lru_cache(maxsize=8)
def _tool_version(tool: str) -> str:
    try:
        proc = subprocess.run([tool, "-version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return proc.stdout.decode("utf-8", "replace").splitlines()[0] if proc.stdout else "unknown"


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


# -- security -----------------------------------------------------------------------------


def _virus_scan(bag: BagView, opts: Options, chk: Check) -> None:
    tool = opts.clamscan or shutil.which("clamscan")
    if not tool:
        chk.status = "not-run"
        chk.detail = Msg(N_("clamscan is not installed on this machine: no virus scan was run"))
        return
    cmd = [tool, "--no-summary", "--infected", "-r", str(bag.location)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=3600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        chk.warn(Msg(N_("clamscan could not finish: {exc}"), exc=exc))
        return
    text = proc.stdout.decode("utf-8", "replace")
    if proc.returncode == 1:
        for line in text.splitlines():
            if line.rstrip().endswith("FOUND"):
                chk.fail(line.strip())
        if not chk.problems:
            chk.fail(Msg(N_("clamscan reports an infection")))
    elif proc.returncode != 0:
        chk.warn(
            Msg(
                N_("clamscan failed (exit {returncode}): {stderr}"),
                returncode=proc.returncode,
                stderr=proc.stderr.decode("utf-8", "replace").strip()[-300:],
            )
        )
    chk.detail = Msg(N_("clamscan {version}"), version=_tool_version_clam(tool))


def _tool_version_clam(tool: str) -> str:
    try:
        proc = subprocess.run([tool, "--version"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.decode("utf-8", "replace").strip()


# -- output -------------------------------------------------------------------------------


def report_json(report: Mapping[str, Any]) -> bytes:
    return (json.dumps(report, ensure_ascii=False, indent=2, sort_keys=False) + "\n").encode()


def report_html(report: Mapping[str, Any], zone: tzinfo = CHINA_STANDARD_TIME) -> bytes:
    """The report for people: Chinese and English side by side whatever the language of
    whoever made it (it travels inside the bag to the archive)."""
    e = html.escape
    rows = []
    for prop in report["properties"].values():
        zh, en = STATUS_LABELS[prop["status"]]
        rows.append(
            f'<h2 class="{e(prop["status"])}">{e(prop["label_zh"])} {e(prop["label_en"])}'
            f" — {e(zh)} / {e(en)}</h2>\n<table>\n<tr><th>检测项 Check</th>"
            "<th>结果 Result</th><th>说明 Detail</th></tr>"
        )
        for chk in prop["checks"]:
            szh, sen = STATUS_LABELS[chk["status"]]
            items = "".join(f"<li>{_both(p)}</li>" for p in chk["problems"])
            notes = "".join(f'<li class="note">{_both(n)}</li>' for n in chk["notes"])
            rows.append(
                f'<tr class="{e(chk["status"])}"><td>{e(chk["id"])} {e(chk["label_zh"])}<br>'
                f"<small>{e(chk['label_en'])}</small></td><td>{e(szh)}<br><small>{e(sen)}</small>"
                f"</td><td>{_both(chk['detail'])}<ul>{items}{notes}</ul></td></tr>"
            )
        rows.append("</table>")
    files = "".join(
        f"<tr><td>{e(f['path'])}</td><td>{e(str(f.get('container')))}</td>"
        f"<td>{e(str(f.get('video_codec') or f.get('audio_codec') or ''))}</td>"
        f"<td>{e(str(f.get('decode')))}</td><td>{'是 yes' if f.get('allowed_format') else '否 no'}"
        f"</td></tr>"
        for f in report["files"]
    )
    overall = "通过 pass" if report["ok"] else "不通过 fail"
    checked = show_time(report["checked_at"], zone)
    doc = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>四性检测报告 Four-properties report — {e(report["bag"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #999;padding:4px;vertical-align:top;text-align:left}}
.fail{{background:#fdd}}.warn{{background:#ffd}}.pass{{background:#efe}}.note{{color:#555}}
.en{{color:#555;font-size:smaller}}
</style></head><body>
<h1>四性检测报告 Four-properties report (DA/T 70)</h1>
<p>包 Bag: <b>{e(report["bag"])}</b><br>检测时间 Checked at: {e(checked)}<br>
方式 Mode: {e(MODE_LABELS.get(report["mode"], report["mode"]))}<br>
载荷 Payload: {report["payload"]["files"]} 个文件 files,
{report["payload"]["bytes"]} 字节 bytes<br>总体结论 Overall: <b>{overall}</b></p>
{"".join(rows)}
<h2>媒体文件 Media files</h2>
<table><tr><th>路径 Path</th><th>格式 Container</th><th>编码 Codec</th><th>解码 Decode</th>
<th>归档格式 Allowed format</th></tr>{files}</table>
</body></html>
"""
    return doc.encode("utf-8")


MODE_LABELS = {"export": "导出时 at export", "on-demand": "按需检测 on demand"}


def _both(text: str) -> str:
    """A message in Chinese with its English below it (the same text once if untranslated)."""
    zh, en = in_chinese(text), str(text)
    if not en or zh == en:
        return html.escape(en)
    return f'{html.escape(zh)}<br><span class="en">{html.escape(en)}</span>'


def summary_lines(report: Mapping[str, Any], *, failures_only: bool = False) -> list[str]:
    """One line per property, then its checks' problems (``fail``/``warn``), in the
    reader's language."""
    chinese = language() == "zh"
    lines = []
    for prop in report["properties"].values():
        zh, en = STATUS_LABELS[prop["status"]]
        if not failures_only:
            label = prop["label_zh"] if chinese else prop["label_en"]
            lines.append(f"{label}：{zh}" if chinese else f"{label}: {en}")
        for chk in prop["checks"]:
            if failures_only and chk["status"] != "fail":
                continue
            label = chk["label_zh"] if chinese else chk["label_en"]
            for p in chk["problems"]:
                level = getattr(p, "level", chk["status"])
                if failures_only and level != "fail":
                    continue
                szh, sen = STATUS_LABELS[level]
                colon = "：" if chinese else ": "
                lines.append(f"  [{szh if chinese else sen}] {chk['id']} {label}{colon}{shown(p)}")
    return lines
