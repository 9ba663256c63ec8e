"""Parsing of BagIt tag files (RFC 8493 and the drafts 0.93–0.97), collecting every problem.

Pure functions over bytes: nothing here touches the file system, so the same code reads a
bag from a directory or from a tar. Each parser returns what it could make of its input
and the list of :class:`Finding` it met, so a validator can report every problem of a
bag at once instead of stopping at the first.

Version differences handled (``version`` is the ``(major, minor)`` of ``bagit.txt``):

* 0.93–0.95 call the metadata file ``package-info.txt``; 0.96 and later ``bag-info.txt``.
* 1.0 percent-encodes LF, CR and ``%`` in manifest paths (``%0A``, ``%0D``, ``%25``);
  0.93–0.96 wrote paths as they were; the later 0.97 drafts (2014–2016) began to
  percent-encode LF and CR, so a 0.97 path is taken literally, and decoded when only
  the decoded name is in the bag.
* Up to 0.97 a metadata element is "a label, a colon and a value, each separated by
  optional whitespace", and every element "MAY be repeated"; 1.0 asks for exactly one
  space after the colon, no whitespace around the label, and forbids repeating the
  reserved elements (``Payload-Oxum``…). The same goes for the two lines of
  ``bagit.txt``. An asterisk before a manifest path (md5sum's binary marker) is allowed
  up to 0.97.
* 1.0 forbids duplicate manifest entries; earlier versions are read tolerantly (a
  warning when the checksums agree).
* A byte-order mark in ``bagit.txt`` is an error in every version: every draft says the
  declaration is UTF-8, and a tool that does not expect the mark misreads the version.

Bounds: a hostile bag must not exhaust memory or time. Each parser stops at
:data:`MAX_LINES` lines (and a manifest at :data:`MAX_FILES` entries) with a
``too-large`` error, and findings go into a :class:`FindingList`, which lists the first
few of each kind and counts the rest ("and 12,345 more like this").
"""

from __future__ import annotations

import codecs
import re
import sys
import tarfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

from archive_export.msg import Msg, shown
from config.i18n import N_

ERROR = "error"
WARNING = "warning"

SUPPORTED_VERSIONS = {(0, 93), (0, 94), (0, 95), (0, 96), (0, 97), (1, 0)}
BOM = "\ufeff"

# Reserved bag-info labels that RFC 8493 §2.2.2 says must not repeat.
NON_REPEATABLE = {"bagging-date", "bag-size", "payload-oxum", "bag-group-identifier", "bag-count"}

_MANIFEST_NAME = re.compile(r"^(tag)?manifest-([A-Za-z0-9_-]+)\.txt$")
_VERSION = re.compile(r"^(\d+)\.(\d+)$")
_OXUM = re.compile(r"^(\d+)\.(\d+)$")
_BAG_COUNT = re.compile(r"^(\d+) of (\d+|\?)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_PERCENT = re.compile(r"%(0A|0D|25)", re.IGNORECASE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# -- bounds ------------------------------------------------------------------------------------
# Chosen so that a bag at every limit at once is verified in well under 200 MB of memory
# (tests/test_verify_bounds.py measures it); a bag beyond one is reported "too large" or
# "too many" (exit 1), never a crash. 留痕 exports are far below them; split a bigger
# handover into several bags.
MAX_FILES = 40_000  # files (and tar members) in one bag, entries in one manifest
MAX_LINES = MAX_FILES + 10_000  # lines read from one tag file (blank ones included)
MAX_TAG_BYTES = 32 << 20  # one tag file (manifest, bag-info, custody excerpt…) in memory
MAX_BAGIT_TXT = 4096  # bagit.txt holds two short lines
# A tar extended header (pax, GNU long name or link), which tarfile reads whole before the
# member it describes: a name or a few attributes, never more than this.
MAX_TAR_HEADER_BYTES = 1 << 20
# Findings listed before the rest are only counted: per kind in one file, and per kind.
LIST_PER_FILE = 20
LIST_PER_KIND = 500


class TarHeaderTooLarge(tarfile.TarError):
    """A tar extended header larger than :data:`MAX_TAR_HEADER_BYTES`: not read."""


class BoundedTarInfo(tarfile.TarInfo):
    """A tar header that refuses an oversized extended header before tarfile reads it
    into memory (a gzipped tar of a few hundred kB can declare one of gigabytes). Pass as
    ``tarfile.open(..., tarinfo=BoundedTarInfo)``; reading then raises TarHeaderTooLarge."""

    _EXTENDED = (
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    )

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # (tarfile's own dispatch, the one place that sees the size before the read.)
        if self.type in self._EXTENDED and self.size > MAX_TAR_HEADER_BYTES:
            raise TarHeaderTooLarge(
                f"a tar extended header of {self.size:,} bytes (before {self.name!r}), more "
                f"than the {MAX_TAR_HEADER_BYTES:,} one may have here (too large)"
            )
        extended = getattr(self, "_sparse_structs", (None, False))[1]  # (set by frombuf)
        if self.type == tarfile.GNUTYPE_SPARSE and extended:
            # An old GNU sparse map continued in extension blocks, which tarfile collects
            # without limit (a 1 MB .tar.gz of them took 600 MB). A bag holds no sparse file.
            raise TarHeaderTooLarge(
                f"{self.name!r}: an old GNU sparse member whose map runs on in extension "
                "headers (a bag holds regular files only; too large to read)"
            )
        return cast(tarfile.TarInfo, super()._proc_member(tarfile_))  # type: ignore[misc]


@dataclass(frozen=True)
class Finding:
    """One problem (or warning) about a bag, naming the file it concerns."""

    kind: str
    path: str  # the file concerned, relative to the bag root ("" for the bag as a whole)
    detail: str
    severity: str = ERROR
    line: int | None = None

    def message(self) -> Msg:
        """The finding as one message: English as a ``str``, translated when shown."""
        where: str = self.path or Msg(N_("(bag)"))
        if self.line is not None:
            where = Msg(N_("{path}, line {line}"), path=where, line=self.line)
        return Msg(N_("{where}: {kind}: {detail}"), where=where, kind=self.kind, detail=self.detail)

    def describe(self, *, translate: bool = True) -> str:
        """The finding as a person reads it (their language), or in English for programs."""
        return shown(self.message()) if translate else str(self.message())

    def as_dict(self) -> dict[str, object]:
        # Programs read findings in English whatever the language (kind is the key).
        return {
            "kind": self.kind,
            "path": self.path,
            "line": self.line,
            "severity": self.severity,
            "detail": str(self.detail),
            "message": self.describe(translate=False),
        }


class FindingList(list[Finding]):
    """Findings, with repeats summarised instead of stored.

    A bag can hold a million blank lines or a million unlisted files; one finding for
    each would take gigabytes (more again as JSON). The first :data:`LIST_PER_FILE` of a
    kind in one file and the first :data:`LIST_PER_KIND` of a kind overall are kept;
    the rest are counted, and :meth:`close` adds one "and N more like this" finding per
    group, with the severity of what it stands for (so an error never hides as a count).
    """

    def __init__(self, items: Iterable[Finding] = ()) -> None:
        super().__init__()
        self._per_file: dict[tuple[str, str, str], int] = {}
        self._per_kind: dict[tuple[str, str], int] = {}
        self.more_in_file: dict[tuple[str, str, str], int] = {}
        self.more_of_kind: dict[tuple[str, str], int] = {}
        self.extend(items)

    def append(self, f: Finding) -> None:
        kind_key = (f.kind, f.severity)
        if self._per_kind.get(kind_key, 0) >= LIST_PER_KIND:
            self.more_of_kind[kind_key] = self.more_of_kind.get(kind_key, 0) + 1
            return
        file_key = (f.kind, f.path, f.severity)
        if self._per_file.get(file_key, 0) >= LIST_PER_FILE:
            self.more_in_file[file_key] = self.more_in_file.get(file_key, 0) + 1
            return
        self._per_kind[kind_key] = self._per_kind.get(kind_key, 0) + 1
        self._per_file[file_key] = self._per_file.get(file_key, 0) + 1
        super().append(f)

    def extend(self, items: Iterable[Finding]) -> None:
        for f in items:
            self.append(f)
        if isinstance(items, FindingList):  # what it had only counted stays counted
            for k, n in items.more_in_file.items():
                self.more_in_file[k] = self.more_in_file.get(k, 0) + n
            for kk, n in items.more_of_kind.items():
                self.more_of_kind[kk] = self.more_of_kind.get(kk, 0) + n

    def close(self) -> None:
        """Add the "and N more" findings; the counts are emptied (call once, at the end)."""
        for (kind, path, severity), n in sorted(self.more_in_file.items()):
            super().append(
                Finding(
                    kind,
                    path,
                    Msg(N_("and {n:,} more like this in this file (not listed one by one)"), n=n),
                    severity,
                )
            )
        for (kind, severity), n in sorted(self.more_of_kind.items()):
            super().append(
                Finding(
                    kind,
                    "",
                    Msg(
                        N_("and {n:,} more {kind} findings in other files (not listed one by one)"),
                        n=n,
                        kind=kind,
                    ),
                    severity,
                )
            )
        self.more_in_file.clear()
        self.more_of_kind.clear()


def iter_lines(text: str) -> Iterator[str]:
    """Lines ended by LF, CR or CRLF (all three are allowed in tag files), one at a time:
    a list of a million empty lines would itself take tens of megabytes."""
    pos, end = 0, len(text)
    while pos < end:
        m = _LINE_BREAK.search(text, pos)
        if m is None:
            yield text[pos:]
            return
        yield text[pos : m.start()]
        pos = m.end()


def bounded_lines(text: str, path: str, findings: list[Finding]) -> Iterator[tuple[int, str]]:
    """(number, line) for at most :data:`MAX_LINES` lines; past that a ``too-large`` error."""
    for number, line in enumerate(iter_lines(text), 1):
        if number > MAX_LINES:
            findings.append(
                Finding(
                    "too-large",
                    path,
                    Msg(
                        N_(
                            "has more than {max_lines:,} lines; the rest was not read (a bag this "
                            "verifier checks holds at most {max_files:,} files)"
                        ),
                        max_lines=MAX_LINES,
                        max_files=MAX_FILES,
                    ),
                    ERROR,
                    number,
                )
            )
            return
        yield number, line


def manifest_kind(name: str) -> tuple[str, str] | None:
    """``("manifest"|"tagmanifest", algorithm)`` for a manifest file name, else None."""
    m = _MANIFEST_NAME.match(name)
    if not m:
        return None
    return ("tagmanifest" if m.group(1) else "manifest", m.group(2).lower())


def split_lines(text: str) -> list[str]:
    """Lines ended by LF, CR or CRLF, as a list (for short texts; see :func:`iter_lines`)."""
    return list(iter_lines(text))


# -- bagit.txt ---------------------------------------------------------------------------------


@dataclass
class Declaration:
    version_text: str | None = None
    version: tuple[int, int] | None = None
    encoding: str = "utf-8"
    findings: list[Finding] = field(default_factory=FindingList)

    @property
    def before_1_0(self) -> bool:
        return self.version is not None and self.version < (1, 0)

    @property
    def info_file(self) -> str:
        if self.version is not None and self.version < (0, 96):
            return "package-info.txt"
        return "bag-info.txt"


def parse_bagit_txt(data: bytes) -> Declaration:
    """Check ``bagit.txt``: exactly two lines, ``Label: value``, in order; the exact
    spacing of 1.0 only for 1.0 bags (see the module doc)."""
    d = Declaration()

    def bad(detail: str, line: int | None = None, severity: str = ERROR) -> None:
        d.findings.append(Finding("bagit-txt", "bagit.txt", detail, severity, line))

    lines = split_lines(_declaration_text(data, bad))
    expected = ("BagIt-Version", "Tag-File-Character-Encoding")
    values: dict[str, str] = {}
    spacing: list[tuple[str, int]] = []  # judged once the version is known
    for number, line in enumerate(lines, 1):
        label, sep, value = line.partition(":")
        if not sep:
            bad(Msg(N_("line {line!r} is not 'Label: value'"), line=line), number)
            continue
        if label != label.strip() or not value.startswith(" ") or value[1:] != value[1:].strip():
            spacing.append(
                (
                    f"line {line!r}: expected exactly 'Label: value' (one space after "
                    "the colon, no other whitespace)",
                    number,
                )
            )
        label, value = label.strip(), value.strip()
        if number <= 2 and label != expected[number - 1]:
            bad(
                Msg(
                    N_("line {number} must be {expected!r}, found {label!r}"),
                    number=number,
                    expected=expected[number - 1],
                    label=label,
                ),
                number,
            )
        elif number > 2:
            bad(
                Msg(N_("unexpected line {line!r} (bagit.txt has exactly two lines)"), line=line),
                number,
            )
        values.setdefault(label, value)
    if len(lines) < 2:
        bad(
            Msg(
                N_(
                    "has {n_lines} line(s); exactly two are required (BagIt-Version, "
                    "Tag-File-Character-Encoding)"
                ),
                n_lines=len(lines),
            )
        )
    _declared_version(d, values.get("BagIt-Version"), bad)
    if not d.before_1_0:
        # Up to 0.97 "optional whitespace" separated label, colon and value.
        for detail, number in spacing:
            bad(detail, number)
    _declared_encoding(d, values.get("Tag-File-Character-Encoding"), bad)
    return d


def _declaration_text(data: bytes, bad: Callable[..., None]) -> str:
    """bagit.txt as text: at most MAX_BAGIT_TXT bytes, without a byte-order mark, UTF-8."""
    if len(data) > MAX_BAGIT_TXT:
        bad(
            Msg(
                N_(
                    "is {n_data:,} bytes; it holds two short lines (only the first "
                    "{MAX_BAGIT_TXT} bytes were read)"
                ),
                n_data=len(data),
                MAX_BAGIT_TXT=MAX_BAGIT_TXT,
            )
        )
        data = data[:MAX_BAGIT_TXT]
    if data.startswith(codecs.BOM_UTF8):
        # Every version: the declaration is UTF-8, and a reader not expecting the mark
        # sees a label "\ufeffBagIt-Version" and so no version at all.
        bad(
            Msg(
                N_(
                    "starts with a byte-order mark (bagit.txt must not have one, in every BagIt "
                    "version); remove the first three bytes"
                )
            ),
            1,
        )
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad(Msg(N_("not UTF-8 ({reason} at byte {start})"), reason=exc.reason, start=exc.start))
        return data.decode("utf-8", "replace")


def _declared_version(d: Declaration, text: str | None, bad: Callable[..., None]) -> None:
    d.version_text = text
    if text is None:
        bad(Msg(N_("no BagIt-Version")))
        return
    m = _VERSION.match(text)
    if not m:
        bad(Msg(N_("BagIt-Version {text!r} is not M.N"), text=text))
        return
    d.version = (int(m.group(1)), int(m.group(2)))
    if d.version not in SUPPORTED_VERSIONS:
        bad(
            Msg(
                N_(
                    "BagIt-Version {text} is not one this verifier knows (0.93–0.97, 1.0); "
                    "checked as 1.0"
                ),
                text=text,
            ),
            severity=WARNING,
        )


def _declared_encoding(d: Declaration, enc: str | None, bad: Callable[..., None]) -> None:
    if enc is None:
        bad(Msg(N_("no Tag-File-Character-Encoding")))
        return
    try:
        codecs.lookup(enc)
        d.encoding = enc
    except LookupError:
        bad(
            Msg(
                N_(
                    "Tag-File-Character-Encoding {enc!r} is not an encoding this system knows; "
                    "tag files read as UTF-8"
                ),
                enc=enc,
            )
        )


def decode_tag_file(data: bytes, path: str, encoding: str, findings: list[Finding]) -> str:
    if encoding.lower().replace("_", "-") in {"utf-8", "utf8"} and data.startswith(codecs.BOM_UTF8):
        findings.append(
            Finding("encoding", path, Msg(N_("starts with a byte-order mark")), WARNING, 1)
        )
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        findings.append(
            Finding(
                "encoding",
                path,
                Msg(
                    N_(
                        "not valid {encoding} ({reason} at byte {start}); undecodable bytes "
                        "replaced"
                    ),
                    encoding=encoding,
                    reason=exc.reason,
                    start=exc.start,
                ),
            )
        )
        return data.decode(encoding, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


# -- bag-info.txt ------------------------------------------------------------------------------


@dataclass
class BagInfo:
    items: list[tuple[str, str]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=FindingList)

    def get(self, label: str) -> str | None:
        wanted = label.lower()
        for key, value in self.items:
            if key.lower() == wanted:
                return value
        return None

    def get_all(self, label: str) -> list[str]:
        wanted = label.lower()
        return [v for k, v in self.items if k.lower() == wanted]


def parse_bag_info(
    text: str, path: str = "bag-info.txt", version: tuple[int, int] | None = None
) -> BagInfo:
    """``Label: value`` lines; a line starting with whitespace continues the previous value.

    ``version`` None or 1.0: RFC 8493's rules; before 1.0 the drafts' looser ones (the
    module doc)."""
    info = BagInfo()
    strict = version is None or version >= (1, 0)
    current: list[str] | None = None  # [label, value] being built

    def close() -> None:
        if current is not None and len(info.items) < MAX_LINES:
            info.items.append((current[0], current[1]))

    for number, line in bounded_lines(text, path, info.findings):
        if line[:1] in {" ", "\t"}:
            if current is None:
                info.findings.append(
                    Finding(
                        "bag-info",
                        path,
                        Msg(N_("continuation line with no element before it")),
                        ERROR,
                        number,
                    )
                )
            elif len(current[1]) < MAX_VALUE:
                # Folding whitespace is not part of the value (RFC 8493 §2.2.2).
                current[1] += " " + line.strip()
            continue
        close()
        current = None
        if not line.strip():
            info.findings.append(Finding("bag-info", path, Msg(N_("blank line")), WARNING, number))
            continue
        label, sep, value = line.partition(":")
        if not sep:
            info.findings.append(
                Finding(
                    "bag-info",
                    path,
                    Msg(N_("line {line!r} is not 'Label: value'"), line=_clip(line)),
                    ERROR,
                    number,
                )
            )
            continue
        _check_label(info, path, label, value, number, strict)
        current = [label.strip(), value.strip()]
    close()
    _check_repeats(info, path, strict)
    _check_reserved_values(info, path)
    return info


def _check_label(
    info: BagInfo, path: str, label: str, value: str, number: int, strict: bool
) -> None:
    """An element's label and the space after its colon (BagIt 1.0: exactly)."""
    if not label.strip():
        info.findings.append(Finding("bag-info", path, Msg(N_("empty label")), ERROR, number))
    elif strict and label != label.strip():
        info.findings.append(
            Finding(
                "bag-info",
                path,
                Msg(
                    N_("label {label!r} has leading/trailing whitespace (BagIt 1.0 forbids it)"),
                    label=_clip(label),
                ),
                ERROR,
                number,
            )
        )
    if strict and value[:1] not in {" ", "\t"}:
        info.findings.append(
            Finding(
                "bag-info",
                path,
                Msg(
                    N_("label {label!r}: no whitespace after the colon"), label=_clip(label.strip())
                ),
                WARNING,
                number,
            )
        )


def _check_repeats(info: BagInfo, path: str, strict: bool) -> None:
    """A reserved element that must not repeat, repeated."""
    seen: dict[str, int] = {}
    for label, _ in info.items:
        seen[label.lower()] = seen.get(label.lower(), 0) + 1
    for label, count in sorted(seen.items()):
        if count > 1 and label in NON_REPEATABLE:
            if strict:
                info.findings.append(
                    Finding(
                        "bag-info",
                        path,
                        Msg(
                            N_(
                                "reserved element {label!r} appears {count} times (it must not "
                                "repeat)"
                            ),
                            label=label,
                            count=count,
                        ),
                    )
                )
            elif len(set(v for k, v in info.items if k.lower() == label)) > 1:
                # Allowed before 1.0, but two different values cannot both be right.
                info.findings.append(
                    Finding(
                        "bag-info",
                        path,
                        Msg(
                            N_("{label!r} appears {count} times with different values"),
                            label=label,
                            count=count,
                        ),
                        WARNING,
                    )
                )


def _check_reserved_values(info: BagInfo, path: str) -> None:
    """Payload-Oxum, Bag-Count and Bagging-Date in their forms."""
    for oxum in info.get_all("Payload-Oxum"):
        if not _OXUM.match(oxum):
            info.findings.append(
                Finding(
                    "bag-info",
                    path,
                    Msg(N_("Payload-Oxum {oxum!r} is not '<bytes>.<count>'"), oxum=_clip(oxum)),
                )
            )
    bag_count = info.get("Bag-Count")
    if bag_count is not None:
        m = _BAG_COUNT.match(bag_count)
        if not m or (m.group(2) != "?" and int(m.group(1)) > int(m.group(2))):
            info.findings.append(
                Finding(
                    "bag-info",
                    path,
                    Msg(
                        N_("Bag-Count {bag_count!r} is not 'N of T' (T may be '?')"),
                        bag_count=_clip(bag_count),
                    ),
                )
            )
    date = info.get("Bagging-Date")
    if date is not None and not _DATE.match(date):
        info.findings.append(
            Finding(
                "bag-info",
                path,
                Msg(N_("Bagging-Date {date!r} is not YYYY-MM-DD"), date=_clip(date)),
                WARNING,
            )
        )


# A value (and what a finding quotes of a line) is cut here: one finding must not be able
# to carry a whole hostile tag file.
MAX_VALUE = 64 << 10
_QUOTE = 200


def _clip(text: str) -> str:
    return text if len(text) <= _QUOTE else text[:_QUOTE] + f"… ({len(text):,} characters)"


def parse_oxum(value: str) -> tuple[int, int] | None:
    m = _OXUM.match(value.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


# -- manifests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # decoded path relative to the bag root
    digest: str  # lower-case hex
    line: int
    # 0.97 only: the percent-decoded path, used when ``path`` is not in the bag (the later
    # 0.97 drafts percent-encoded LF and CR; the earlier ones wrote names as they were).
    alt: str | None = None


@dataclass
class Manifest:
    name: str  # e.g. manifest-sha256.txt
    kind: str  # manifest | tagmanifest
    algorithm: str
    entries: dict[str, Entry] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=FindingList)


def _percent_decode(raw: str) -> str:
    return _PERCENT.sub(lambda m: {"0a": "\n", "0d": "\r", "25": "%"}[m.group(1).lower()], raw)


def decode_path(raw: str, version: tuple[int, int] | None) -> str:
    if version is not None and version < (1, 0):
        return raw
    return _percent_decode(raw)


def check_path(path: str) -> str | None:
    """Why ``path`` cannot name a file inside the bag, or None when it can."""
    if not path:
        return "empty path"
    if "\x00" in path:
        return "contains a NUL character"
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
        return "absolute path"
    parts = path.split("/")
    if ".." in parts:
        return "contains '..' (escapes its directory)"
    if any(p in {"", "."} for p in parts):
        return "empty or '.' path segment"
    return None


def _split_line(line: str, version: tuple[int, int] | None) -> list[str]:
    if version is not None and version < (1, 0):
        return line.strip().split(None, 1)
    # 1.0: checksum, one or more linear whitespace, path (which may itself contain
    # spaces, and keeps trailing ones).
    mm = re.match(r"^([^ \t]+)[ \t]+(.*)$", line)
    return [mm.group(1), mm.group(2)] if mm else line.split(None, 1)


def parse_manifest(
    name: str, text: str, version: tuple[int, int] | None, digest_length: int | None
) -> Manifest:
    """Every ``<checksum> <path>`` line; bad lines, unsafe paths and duplicates are findings."""
    kind, algorithm = manifest_kind(name) or ("manifest", "?")
    m = Manifest(name, kind, algorithm)
    for number, line in bounded_lines(text, name, m.findings):
        read = _read_entry(m, line, number, version, digest_length)
        if read is not None and not _place_entry(m, *read, number, version):
            break
    _normalisation_clashes(m)
    return m


def _read_entry(
    m: Manifest,
    line: str,
    number: int,
    version: tuple[int, int] | None,
    digest_length: int | None,
) -> tuple[str, str, str | None] | None:
    """One manifest line as (path, digest, the 0.97 percent-decoded path), its format
    findings added; None when the line names no usable entry."""
    name, add = m.name, m.findings.append
    if not line.strip():
        add(Finding("manifest-format", name, Msg(N_("blank line")), WARNING, number))
        return None
    parts = _split_line(line, version)
    if len(parts) != 2 or not parts[1]:
        add(
            Finding(
                "manifest-format",
                name,
                Msg(N_("line {line!r} is not '<checksum> <path>'"), line=_clip(line)),
                ERROR,
                number,
            )
        )
        return None
    digest, raw_path = parts
    old = version is not None and version < (1, 0)
    raw_path = _check_entry_text(m, digest, raw_path, number, old, digest_length)
    # Interned: every manifest lists the same paths; one string serves them all.
    path = sys.intern(decode_path(raw_path, version))
    alt = None
    if version == (0, 97) and _PERCENT.search(raw_path):
        alt = _percent_decode(raw_path)
    if not old and re.search(r"%(?!0[AaDd]|25)", raw_path):
        add(
            Finding(
                "percent-encoding",
                name,
                Msg(
                    N_("path {raw_path!r} has a '%' that is not %0A, %0D or %25"),
                    raw_path=_clip(raw_path),
                ),
                WARNING,
                number,
            )
        )
    why = check_path(path) or (check_path(alt) if alt is not None else None)
    if why is not None:
        add(
            Finding(
                "unsafe-path",
                name,
                Msg(N_("{path!r}: {why}"), path=_clip(path), why=why),
                ERROR,
                number,
            )
        )
        return None
    return path, digest, alt


def _check_entry_text(
    m: Manifest, digest: str, raw_path: str, number: int, old: bool, digest_length: int | None
) -> str:
    """Findings on a line's checksum and path as written; the path without md5sum's
    binary-mode marker."""
    name, add = m.name, m.findings.append
    if raw_path.startswith("*"):
        # md5sum's binary-mode marker: the drafts up to 0.97 allowed it; 1.0 does not
        # mention it.
        if not old:
            add(
                Finding(
                    "manifest-format",
                    name,
                    Msg(
                        N_(
                            "path {raw_path!r} starts with '*' (binary-mode marker of md5sum); "
                            "ignored"
                        ),
                        raw_path=_clip(raw_path),
                    ),
                    WARNING,
                    number,
                )
            )
        raw_path = raw_path[1:]
    if not _HEX.match(digest) or (digest_length is not None and len(digest) != digest_length):
        want = f"{digest_length} hex digits" if digest_length else "hex digits"
        add(
            Finding(
                "manifest-format",
                name,
                Msg(
                    N_("checksum {digest!r} for {raw_path!r} is not {want}"),
                    digest=_clip(digest),
                    raw_path=_clip(raw_path),
                    want=want,
                ),
                ERROR,
                number,
            )
        )
    if "\\" in raw_path:
        add(
            Finding(
                "manifest-format",
                name,
                Msg(
                    N_(
                        "path {raw_path!r} contains a backslash (separators must be '/'; on "
                        "Windows a backslash is a separator, so the file would not be found there)"
                    ),
                    raw_path=_clip(raw_path),
                ),
                WARNING,
                number,
            )
        )
    return raw_path


def _place_entry(
    m: Manifest,
    path: str,
    digest: str,
    alt: str | None,
    number: int,
    version: tuple[int, int] | None,
) -> bool:
    """Add an entry unless it is misplaced or a duplicate; False once the manifest lists
    more than MAX_FILES files (the rest is not read)."""
    name, add = m.name, m.findings.append
    if m.kind == "manifest" and not path.startswith("data/"):
        add(
            Finding(
                "path-outside-data",
                name,
                Msg(N_("{path!r} is a payload manifest entry outside data/"), path=_clip(path)),
                ERROR,
                number,
            )
        )
        return True
    if m.kind == "tagmanifest" and path.startswith("data/"):
        add(
            Finding(
                "path-outside-data",
                name,
                Msg(N_("{path!r}: a tag manifest lists a payload file"), path=_clip(path)),
                WARNING,
                number,
            )
        )
    if path in m.entries:
        prev = m.entries[path]
        same = prev.digest == digest.lower()
        old = version is not None and version < (1, 0)
        sev = ERROR if (not old or not same) else WARNING
        template = (
            N_("{path!r} is listed again (first on line {line}) with the same checksum")
            if same
            else N_("{path!r} is listed again (first on line {line}) with a different checksum")
        )
        add(
            Finding(
                "duplicate-entry",
                name,
                Msg(template, path=_clip(path), line=prev.line),
                sev,
                number,
            )
        )
        return True
    if len(m.entries) >= MAX_FILES:
        add(
            Finding(
                "too-large",
                name,
                Msg(
                    N_(
                        "lists more than {max_files:,} files; the rest was not read (this "
                        "verifier checks bags of at most that many files)"
                    ),
                    max_files=MAX_FILES,
                ),
                ERROR,
                number,
            )
        )
        return False
    m.entries[path] = Entry(path, digest.lower(), number, alt)
    return True


def _normalisation_clashes(m: Manifest) -> None:
    by_nfc: dict[str, str] = {}
    for path in m.entries:
        key = unicodedata.normalize("NFC", path)
        other = by_nfc.setdefault(key, path)
        if other != path:
            m.findings.append(
                Finding(
                    "normalization-clash",
                    m.name,
                    Msg(
                        N_(
                            "{other!r} and {path!r} differ only in Unicode normalisation (they "
                            "clash on macOS and some archives)"
                        ),
                        other=other,
                        path=path,
                    ),
                    WARNING,
                    m.entries[path].line,
                )
            )


def portability_findings(paths: Iterable[str]) -> list[Finding]:
    """Payload names that cannot all be extracted on Windows or macOS: names equal but for
    letter case (or case and Unicode normalisation), and names with a backslash. Warnings:
    the bag is sound, but a copy made there silently loses or misplaces files."""
    found: list[Finding] = FindingList()
    by_key: dict[str, str] = {}
    for path in sorted(paths):
        if "\\" in path:
            found.append(
                Finding(
                    "backslash-name",
                    path,
                    Msg(
                        N_(
                            "the name contains a backslash, which Windows takes as a folder "
                            "separator: extracted there it lands in another folder or is refused"
                        )
                    ),
                    WARNING,
                )
            )
        nfc = unicodedata.normalize("NFC", path)
        other = by_key.setdefault(nfc.casefold(), path)
        if other != path and unicodedata.normalize("NFC", other) != nfc:
            # (Equal after normalisation alone is the manifests' normalization-clash.)
            found.append(
                Finding(
                    "case-clash",
                    path,
                    Msg(
                        N_(
                            "differs from {other!r} only in letter case: on a case-insensitive "
                            "file system (Windows, macOS) one of the two overwrites the other "
                            "when the bag is extracted or copied"
                        ),
                        other=other,
                    ),
                    WARNING,
                )
            )
    return found


def parse_fetch(text: str, version: tuple[int, int] | None) -> tuple[dict[str, str], list[Finding]]:
    """``url length path`` lines: the payload files that were to be fetched from elsewhere."""
    entries: dict[str, str] = {}
    findings: list[Finding] = FindingList()
    for number, line in bounded_lines(text, "fetch.txt", findings):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
            findings.append(
                Finding(
                    "fetch-format",
                    "fetch.txt",
                    Msg(N_("line {line!r} is not '<url> <length> <path>'"), line=_clip(line)),
                    ERROR,
                    number,
                )
            )
            continue
        path = decode_path(parts[2], version)
        why = check_path(path)
        if why is not None or not path.startswith("data/"):
            findings.append(
                Finding(
                    "unsafe-path",
                    "fetch.txt",
                    Msg(N_("{path!r}: {value}"), path=_clip(path), value=why or "outside data/"),
                    ERROR,
                    number,
                )
            )
            continue
        if len(entries) < MAX_FILES:
            entries[path] = parts[0][:_QUOTE]
    return entries, findings
