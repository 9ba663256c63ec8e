"""Parsing of BagIt tag files (RFC 8493 and the drafts 0.93–0.97), collecting every problem.

Pure functions over bytes: nothing here touches the file system, so the same code reads a
bag from a directory or from a tar. Each parser returns what it could make of its input
and the list of :class:`Finding` it met, so a validator can report every problem of a
bag at once instead of stopping at the first.

Version differences handled (``version`` is the ``(major, minor)`` of ``bagit.txt``):

* 0.93–0.95 call the metadata file ``package-info.txt``; 0.96 and later ``bag-info.txt``.
* 1.0 percent-encodes LF, CR and ``%`` in manifest paths (``%0A``, ``%0D``, ``%25``);
  earlier versions wrote paths as they were.
* 1.0 forbids a byte-order mark in ``bagit.txt`` and duplicate manifest entries;
  earlier versions are read tolerantly (a warning).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Finding:
    """One problem (or warning) about a bag, naming the file it concerns."""

    kind: str
    path: str  # the file concerned, relative to the bag root ("" for the bag as a whole)
    detail: str
    severity: str = ERROR
    line: int | None = None

    def describe(self) -> str:
        where = self.path or "(bag)"
        if self.line is not None:
            where += f", line {self.line}"
        return f"{where}: {self.kind}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "line": self.line,
            "severity": self.severity,
            "detail": self.detail,
            "message": self.describe(),
        }


def manifest_kind(name: str) -> tuple[str, str] | None:
    """``("manifest"|"tagmanifest", algorithm)`` for a manifest file name, else None."""
    m = _MANIFEST_NAME.match(name)
    if not m:
        return None
    return ("tagmanifest" if m.group(1) else "manifest", m.group(2).lower())


def split_lines(text: str) -> list[str]:
    """Lines ended by LF, CR or CRLF (all three are allowed in tag files)."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# -- bagit.txt ---------------------------------------------------------------------------------


@dataclass
class Declaration:
    version_text: str | None = None
    version: tuple[int, int] | None = None
    encoding: str = "utf-8"
    findings: list[Finding] = field(default_factory=list)

    @property
    def info_file(self) -> str:
        if self.version is not None and self.version < (0, 96):
            return "package-info.txt"
        return "bag-info.txt"


def parse_bagit_txt(data: bytes) -> Declaration:
    """Check ``bagit.txt`` strictly: exactly two lines, ``Label: value``, in order."""
    d = Declaration()
    path = "bagit.txt"

    def bad(detail: str, line: int | None = None, severity: str = ERROR) -> None:
        d.findings.append(Finding("bagit-txt", path, detail, severity, line))

    if data.startswith(codecs.BOM_UTF8):
        # Only 1.0 forbids it outright; earlier drafts were silent.
        bad("starts with a byte-order mark", 1, WARNING)
        data = data[len(codecs.BOM_UTF8) :]
        bom = True
    else:
        bom = False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad(f"not UTF-8 ({exc.reason} at byte {exc.start})")
        text = data.decode("utf-8", "replace")
    lines = split_lines(text)
    expected = ("BagIt-Version", "Tag-File-Character-Encoding")
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        label, sep, value = line.partition(":")
        if not sep:
            bad(f"line {line!r} is not 'Label: value'", number)
            continue
        if label != label.strip() or not value.startswith(" ") or value[1:] != value[1:].strip():
            bad(f"line {line!r}: expected exactly 'Label: value' (one space after the colon, "
                "no other whitespace)", number)
        label, value = label.strip(), value.strip()
        if number <= 2 and label != expected[number - 1]:
            bad(f"line {number} must be {expected[number - 1]!r}, found {label!r}", number)
        elif number > 2:
            bad(f"unexpected line {line!r} (bagit.txt has exactly two lines)", number)
        values.setdefault(label, value)
    if len(lines) < 2:
        bad(f"has {len(lines)} line(s); exactly two are required "
            "(BagIt-Version, Tag-File-Character-Encoding)")
    d.version_text = values.get("BagIt-Version")
    if d.version_text is None:
        bad("no BagIt-Version")
    else:
        m = _VERSION.match(d.version_text)
        if not m:
            bad(f"BagIt-Version {d.version_text!r} is not M.N")
        else:
            d.version = (int(m.group(1)), int(m.group(2)))
            if d.version not in SUPPORTED_VERSIONS:
                bad(f"BagIt-Version {d.version_text} is not one this verifier knows "
                    "(0.93–0.97, 1.0); checked as 1.0", severity=WARNING)
    if bom and d.version is not None and d.version >= (1, 0):
        d.findings[0] = Finding("bagit-txt", path, "starts with a byte-order mark "
                                "(forbidden in BagIt 1.0)", ERROR, 1)
    enc = values.get("Tag-File-Character-Encoding")
    if enc is None:
        bad("no Tag-File-Character-Encoding")
    else:
        try:
            codecs.lookup(enc)
            d.encoding = enc
        except LookupError:
            bad(f"Tag-File-Character-Encoding {enc!r} is not an encoding this system knows; "
                "tag files read as UTF-8")
    return d


def decode_tag_file(data: bytes, path: str, encoding: str, findings: list[Finding]) -> str:
    if encoding.lower().replace("_", "-") in {"utf-8", "utf8"} and data.startswith(
        codecs.BOM_UTF8
    ):
        findings.append(Finding("encoding", path, "starts with a byte-order mark", WARNING, 1))
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        findings.append(Finding("encoding", path, f"not valid {encoding} ({exc.reason} at byte "
                                f"{exc.start}); undecodable bytes replaced"))
        return data.decode(encoding, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


# -- bag-info.txt ------------------------------------------------------------------------------


@dataclass
class BagInfo:
    items: list[tuple[str, str]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def get(self, label: str) -> str | None:
        wanted = label.lower()
        for key, value in self.items:
            if key.lower() == wanted:
                return value
        return None

    def get_all(self, label: str) -> list[str]:
        wanted = label.lower()
        return [v for k, v in self.items if k.lower() == wanted]


def parse_bag_info(text: str, path: str = "bag-info.txt") -> BagInfo:
    """``Label: value`` lines; a line starting with whitespace continues the previous value."""
    info = BagInfo()
    current: list[str] | None = None  # [label, value] being built

    def close() -> None:
        if current is not None:
            info.items.append((current[0], current[1]))

    for number, line in enumerate(split_lines(text), 1):
        if line[:1] in {" ", "\t"}:
            if current is None:
                info.findings.append(
                    Finding("bag-info", path, "continuation line with no element before it",
                            ERROR, number))
            else:
                # Folding whitespace is not part of the value (RFC 8493 §2.2.2).
                current[1] += " " + line.strip()
            continue
        close()
        current = None
        if not line.strip():
            info.findings.append(Finding("bag-info", path, "blank line", WARNING, number))
            continue
        label, sep, value = line.partition(":")
        if not sep:
            info.findings.append(
                Finding("bag-info", path, f"line {line!r} is not 'Label: value'", ERROR, number))
            continue
        if not label or label != label.strip():
            info.findings.append(
                Finding("bag-info", path, f"label {label!r} is empty or has leading/trailing "
                        "whitespace", ERROR, number))
        if value[:1] not in {" ", "\t"}:
            info.findings.append(
                Finding("bag-info", path, f"label {label.strip()!r}: no whitespace after the "
                        "colon", WARNING, number))
        current = [label.strip(), value.strip()]
    close()
    seen: dict[str, int] = {}
    for label, _ in info.items:
        seen[label.lower()] = seen.get(label.lower(), 0) + 1
    for label, count in sorted(seen.items()):
        if count > 1 and label in NON_REPEATABLE:
            info.findings.append(
                Finding("bag-info", path, f"reserved element {label!r} appears {count} times "
                        "(it must not repeat)"))
    oxum = info.get("Payload-Oxum")
    if oxum is not None and not _OXUM.match(oxum):
        info.findings.append(
            Finding("bag-info", path, f"Payload-Oxum {oxum!r} is not '<bytes>.<count>'"))
    bag_count = info.get("Bag-Count")
    if bag_count is not None:
        m = _BAG_COUNT.match(bag_count)
        if not m or (m.group(2) != "?" and int(m.group(1)) > int(m.group(2))):
            info.findings.append(
                Finding("bag-info", path, f"Bag-Count {bag_count!r} is not 'N of T' "
                        "(T may be '?')"))
    date = info.get("Bagging-Date")
    if date is not None and not _DATE.match(date):
        info.findings.append(
            Finding("bag-info", path, f"Bagging-Date {date!r} is not YYYY-MM-DD", WARNING))
    return info


def parse_oxum(value: str) -> tuple[int, int] | None:
    m = _OXUM.match(value.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


# -- manifests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    path: str  # decoded path relative to the bag root
    digest: str  # lower-case hex
    line: int


@dataclass
class Manifest:
    name: str  # e.g. manifest-sha256.txt
    kind: str  # manifest | tagmanifest
    algorithm: str
    entries: dict[str, Entry] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def decode_path(raw: str, version: tuple[int, int] | None) -> str:
    if version is not None and version < (1, 0):
        return raw
    return _PERCENT.sub(lambda m: {"0a": "\n", "0d": "\r", "25": "%"}[m.group(1).lower()], raw)


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


def parse_manifest(name: str, text: str, version: tuple[int, int] | None,
                   digest_length: int | None) -> Manifest:
    """Every ``<checksum> <path>`` line; bad lines, unsafe paths and duplicates are findings."""
    kind, algorithm = manifest_kind(name) or ("manifest", "?")
    m = Manifest(name, kind, algorithm)
    first_line: dict[str, int] = {}
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            m.findings.append(Finding("manifest-format", name, "blank line", WARNING, number))
            continue
        parts = line.strip().split(None, 1) if version and version < (1, 0) else None
        if parts is None:
            # 1.0: checksum, one or more linear whitespace, path (which may itself contain
            # spaces, and keeps trailing ones).
            mm = re.match(r"^([^ \t]+)[ \t]+(.*)$", line)
            parts = [mm.group(1), mm.group(2)] if mm else line.split(None, 1)
        if len(parts) != 2 or not parts[1]:
            m.findings.append(Finding("manifest-format", name,
                                      f"line {line!r} is not '<checksum> <path>'", ERROR, number))
            continue
        digest, raw_path = parts
        if raw_path.startswith("*"):
            # md5sum's binary-mode marker; some old tools wrote it.
            m.findings.append(Finding("manifest-format", name,
                                      f"path {raw_path!r} starts with '*' (binary-mode marker "
                                      "of md5sum); ignored", WARNING, number))
            raw_path = raw_path[1:]
        if not _HEX.match(digest) or (digest_length is not None and len(digest) != digest_length):
            want = f"{digest_length} hex digits" if digest_length else "hex digits"
            m.findings.append(Finding("manifest-format", name,
                                      f"checksum {digest!r} for {raw_path!r} is not {want}",
                                      ERROR, number))
        if "\\" in raw_path:
            m.findings.append(Finding("manifest-format", name,
                                      f"path {raw_path!r} contains a backslash (separators must "
                                      "be '/')", WARNING, number))
        path = decode_path(raw_path, version)
        if version is not None and version >= (1, 0) and re.search(r"%(?!0[AaDd]|25)", raw_path):
            m.findings.append(Finding("percent-encoding", name,
                                      f"path {raw_path!r} has a '%' that is not %0A, %0D or %25",
                                      WARNING, number))
        why = check_path(path)
        if why is not None:
            m.findings.append(Finding("unsafe-path", name, f"{path!r}: {why}", ERROR, number))
            continue
        if kind == "manifest" and not path.startswith("data/"):
            m.findings.append(Finding("path-outside-data", name,
                                      f"{path!r} is a payload manifest entry outside data/",
                                      ERROR, number))
            continue
        if kind == "tagmanifest" and path.startswith("data/"):
            m.findings.append(Finding("path-outside-data", name,
                                      f"{path!r}: a tag manifest lists a payload file",
                                      WARNING, number))
        if path in m.entries:
            prev = m.entries[path]
            same = "same" if prev.digest == digest.lower() else "a different"
            sev = ERROR if (version is None or version >= (1, 0) or same != "same") else WARNING
            m.findings.append(Finding("duplicate-entry", name,
                                      f"{path!r} is listed again (first on line "
                                      f"{first_line[path]}) with {same} checksum", sev, number))
            continue
        first_line[path] = number
        m.entries[path] = Entry(path, digest.lower(), number)
    _normalisation_clashes(m)
    return m


def _normalisation_clashes(m: Manifest) -> None:
    by_nfc: dict[str, str] = {}
    for path in m.entries:
        key = unicodedata.normalize("NFC", path)
        other = by_nfc.setdefault(key, path)
        if other != path:
            m.findings.append(Finding("normalization-clash", m.name,
                                      f"{other!r} and {path!r} differ only in Unicode "
                                      "normalisation (they clash on macOS and some archives)",
                                      WARNING, m.entries[path].line))


def parse_fetch(text: str, version: tuple[int, int] | None) -> tuple[dict[str, str], list[Finding]]:
    """``url length path`` lines: the payload files that were to be fetched from elsewhere."""
    entries: dict[str, str] = {}
    findings: list[Finding] = []
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
            findings.append(Finding("fetch-format", "fetch.txt",
                                    f"line {line!r} is not '<url> <length> <path>'", ERROR, number))
            continue
        path = decode_path(parts[2], version)
        why = check_path(path)
        if why is not None or not path.startswith("data/"):
            findings.append(Finding("unsafe-path", "fetch.txt",
                                    f"{path!r}: {why or 'outside data/'}", ERROR, number))
            continue
        entries[path] = parts[0]
    return entries, findings
