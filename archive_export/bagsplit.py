"""Splitting an export into numbered bags that ``liuhen verify`` accepts.

``liuhen verify`` and ``four-properties`` keep their memory bounded on hostile input:
a bag with more files than :data:`bagparse.MAX_FILES`, a tag or metadata file read whole
of more than :data:`bagparse.MAX_TAG_BYTES` bytes or :data:`bagparse.MAX_LINES` lines, or
a descriptor of more than :data:`fourprops.MAX_XML_ELEMENTS` elements is "invalid: too
large / too many". An export must never write such a bag, so each bag's load is counted
while the records are planned, against those same constants (read when a plan is made,
never copied) less a safety margin, and a new bag is started before any would pass.

What is counted per record is measured by rendering it with the writers' own code (a
manifest line, a hand-over row, its part of ``package.xml``), and its custody events by
their lines in ``custody.jsonl``; the rest of a bag (tag files, metadata files, bag-info
lines, the export's own event) is a fixed allowance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from archive_export import bagparse, bagview, fourprops
from archive_export.bagwriter import ALGORITHMS, FileEntry, manifest_bytes
from archive_export.descriptor import package_xml
from archive_export.handover import handover_csv
from archive_export.records import RecordInfo
from config.errors import EXIT_DATAERR, LiuhenError
from config.i18n import N_, _

# Share of each verifier bound a bag may use: the rest absorbs what is only estimated
# (the package.xml header, the export's own custody event, the chain heads).
SAFETY = 0.9
# bagit.txt, bag-info.txt, 3 manifests, VERIFY.txt, signing-key.pem, 3 tag manifests and
# the signature; and the payload files under data/metadata/ (anchors.jsonl, events.xml,
# custody.jsonl, keys.json, name-map.csv, package.xml, handover.csv, four-properties
# .json and .html).
TAG_FILES = 11
METADATA_FILES = 9
METADATA_PATH_BYTES = 64  # a data/metadata/… path, in a manifest or hand-over line
BAG_INFO_LINES = 16  # fixed labels; one Liuhen-Case-Id line per case comes on top
_DIGEST_HEX = {"sha256": 64, "sha512": 128, "sm3": 64}


class BagTooBig(LiuhenError):
    """One record (or a case's own history) is more than one bag may hold."""

    exit_code = EXIT_DATAERR


@dataclass(frozen=True)
class Bounds:
    """What one bag may hold, from the verifier's bounds as they are now."""

    files: int  # payload and tag files
    members: int  # files and folders (tar members)
    lines: int  # lines of one file read whole
    tag_bytes: int  # bytes of one file read whole
    held_bytes: int  # tag files and custody excerpt together (a compressed tar's stream)
    xml_elements: int  # elements of package.xml

    @classmethod
    def of_verifier(cls) -> Bounds:
        def keep(limit: int) -> int:
            return int(limit * SAFETY)

        return cls(
            files=keep(bagparse.MAX_FILES),
            members=keep(bagview.MAX_MEMBERS),
            lines=keep(bagparse.MAX_LINES),
            tag_bytes=keep(bagparse.MAX_TAG_BYTES),
            held_bytes=keep(bagview.MAX_HELD_BYTES),
            xml_elements=keep(fourprops.MAX_XML_ELEMENTS),
        )


@dataclass(frozen=True)
class Cost:
    """What one record adds to a bag."""

    files: int
    folders: frozenset[str]
    manifest: Mapping[str, int]  # algorithm -> bytes of its lines
    handover: int  # bytes of its hand-over rows
    package: int  # bytes of its part of package.xml
    elements: int  # elements of its part of package.xml
    objects: frozenset[str]  # custody object ids (digests, docking uid)
    cases: frozenset[str]


def _fake_entry(path: str, size: int) -> FileEntry:
    return FileEntry(path, size, {alg: "0" * _DIGEST_HEX[alg] for alg in ALGORITHMS})


_EMPTY_PACKAGE: dict[str, str] = {
    k: ""
    for k in (
        "uid",
        "bag",
        "bag_count",
        "created",
        "station",
        "actor",
        "organization",
        "fonds",
        "key_id",
        "scope",
    )
}


@cache
def _empty_package() -> bytes:
    return package_xml(export=_EMPTY_PACKAGE, cases=[], records=[], files=[])


def record_cost(r: RecordInfo, objects: frozenset[str]) -> Cost:
    entries = [_fake_entry(f.path, f.size) for f in r.files]
    folders = {
        "/".join(f.path.split("/")[:i]) for f in r.files for i in range(1, f.path.count("/") + 1)
    }
    empty = _empty_package()
    package = package_xml(export=_EMPTY_PACKAGE, cases=[], records=[r], files=entries)
    return Cost(
        files=len(entries),
        folders=frozenset(folders),
        manifest={alg: len(manifest_bytes(entries, alg)) for alg in ALGORITHMS},
        handover=len(handover_csv(entries)) - len(handover_csv([])),
        package=len(package) - len(empty),
        elements=package.count(b"<") - empty.count(b"<"),
        objects=objects,
        cases=frozenset(r.case_numbers),
    )


@dataclass
class Load:
    """A bag being planned: its records and what they add up to."""

    bounds: Bounds
    custody: Mapping[str, tuple[int, int]]  # object id -> (events, bytes)
    reserve: tuple[int, int]  # custody (events, bytes) known only when writing
    records: list[RecordInfo] = field(default_factory=list)
    files: int = 0
    folders: set[str] = field(default_factory=set)
    manifest: dict[str, int] = field(default_factory=dict)
    handover: int = 0
    package: int = 0
    elements: int = 0
    objects: set[str] = field(default_factory=set)
    cases: set[str] = field(default_factory=set)
    events: int = 0  # custody excerpt, the reserve included
    custody_bytes: int = 0

    def __post_init__(self) -> None:
        self.events, self.custody_bytes = self.reserve

    def over_with(self, c: Cost) -> list[str]:
        """Which bounds the bag would pass with ``c`` added (empty: it fits), each as
        "<what> of <n> (at most <bound> here)"."""
        b = self.bounds
        files = self.files + c.files + TAG_FILES + METADATA_FILES
        # data/metadata, and a tar's root directory, come on top.
        folders = len(self.folders) + len(c.folders - self.folders) + 2
        manifests = {
            alg: self.manifest.get(alg, 0)
            + c.manifest[alg]
            + METADATA_FILES * (METADATA_PATH_BYTES + _DIGEST_HEX[alg])
            for alg in ALGORITHMS
        }
        events, custody = self._custody_with(c)
        cases = len(self.cases) + len(c.cases - self.cases)
        measures: list[tuple[str, int, int]] = [
            (N_("files in the bag"), files, b.files),
            (N_("files and folders"), files + folders, b.members),
            (N_("manifest lines"), files - TAG_FILES, b.lines),
            (N_("manifest bytes"), max(manifests.values()), b.tag_bytes),
            (N_("hand-over list bytes"), self.handover + c.handover, b.tag_bytes),
            (N_("custody excerpt events"), events, b.lines),
            (N_("custody excerpt bytes"), custody, b.tag_bytes),
            (
                N_("manifest and custody bytes held together"),
                sum(manifests.values()) + custody,
                b.held_bytes,
            ),
            (N_("package.xml bytes"), self.package + c.package, b.tag_bytes),
            (N_("package.xml elements"), self.elements + c.elements + 4 * cases, b.xml_elements),
            (N_("bag-info.txt lines"), BAG_INFO_LINES + cases, b.lines),
        ]
        return [
            _("{what}: {count:,} (at most {bound:,} here)").format(
                what=_(what), count=n, bound=bound
            )
            for what, n, bound in measures
            if n > bound
        ]

    def _custody_with(self, c: Cost) -> tuple[int, int]:
        """Events and bytes of the custody excerpt with ``c`` added: an event belongs to
        one object, and each object's events are in the excerpt once."""
        new = [self.custody.get(o, (0, 0)) for o in (c.objects | c.cases) - self.objects]
        return (self.events + sum(n for n, _b in new), self.custody_bytes + sum(b for _n, b in new))

    def add(self, r: RecordInfo, c: Cost) -> None:
        self.records.append(r)
        self.files += c.files
        self.folders |= c.folders
        for alg in ALGORITHMS:
            self.manifest[alg] = self.manifest.get(alg, 0) + c.manifest[alg]
        self.handover += c.handover
        self.package += c.package
        self.elements += c.elements
        self.events, self.custody_bytes = self._custody_with(c)
        self.objects |= c.objects | c.cases
        self.cases |= c.cases


def plan(
    records: Sequence[RecordInfo],
    *,
    max_bytes: int | None,
    objects: Callable[[RecordInfo], frozenset[str]],
    custody: Mapping[str, tuple[int, int]],
    reserve: tuple[int, int],
) -> list[list[RecordInfo]]:
    """Greedy, in record order: a new bag when the next record would pass ``max_bytes``
    of payload or any of the verifier's bounds. A record larger than ``max_bytes`` gets
    a bag of its own (a file is never cut); a record that alone passes a verifier bound
    is refused (:class:`BagTooBig`), since no bag could hold it."""
    bounds = Bounds.of_verifier()
    bags: list[Load] = []
    size = 0

    def new_bag() -> Load:
        bags.append(Load(bounds, custody, reserve))
        return bags[-1]

    load = new_bag()
    for r in records:
        cost = record_cost(r, objects(r))
        rsize = sum(f.size for f in r.files)
        if load.records and ((max_bytes and size + rsize > max_bytes) or load.over_with(cost)):
            load, size = new_bag(), 0
        if over := load.over_with(cost):
            raise BagTooBig(
                _(
                    "recording {id} ({name}) is too big for one bag that 'liuhen verify' "
                    "accepts (its bounds keep memory bounded on any input), even alone: {over}"
                ).format(id=r.recording_id, name=r.original_name, over="; ".join(over)),
                hint=_(
                    "nothing was written or recorded; a history that long is not expected "
                    "(see 'Bags that liuhen verify accepts' in docs/export.md): check it with "
                    "'liuhen show {id}' and 'liuhen custody verify'"
                ).format(id=r.recording_id),
            )
        load.add(r, cost)
        size += rsize
    return [b.records for b in bags]
