"""Offline verification of a BagIt bag (a directory or a tar): `liuhen verify BUNDLE`.

Needs nothing but the bag: no catalog, no network. Checks, reporting every failure with
the file it concerns (never stopping at the first):

1. ``bagit.txt`` strictly (two lines, exact form, known version, encoding), the
   metadata file (``bag-info.txt``; ``package-info.txt`` before 0.96), ``fetch.txt``.
2. Every payload and tag manifest of every algorithm present (md5, sha1, sha256, sha512,
   SM3 and any other hashlib knows): format, unsafe paths (absolute, ``..``), payload
   entries outside ``data/``, duplicate entries, percent-encoding (1.0), Unicode
   normalisation clashes (a warning).
3. Completeness: every listed file exists, every payload file is listed in every payload
   manifest, nothing unexpected (links and special files are reported, never followed),
   ``Payload-Oxum``.
4. Fixity: every checksum, each file read once with all its algorithms computed over
   the same bytes, on every core (:mod:`archive_export.parallel_hash`).
5. The export signature (``tagmanifest-sha256.txt.sig`` by ``signing-key.pem``): valid,
   key id equal to ``Liuhen-Signing-Key-Id``, and trusted (in an auditor's key ring) or
   only self-declared. A 留痕 bag must be signed; another tool's bag need not be.
6. The custody excerpt (``data/metadata/custody.jsonl`` with ``keys.json``): each
   event's hash and signature, chain links between consecutive events of a station,
   and the digests events name against the manifests.

The bag is read by :mod:`archive_export.bagview` (a directory, a tar read in place, a
compressed tar streamed once; never written, never memory-mapped); members that would
escape are reported, never extracted. The four-properties check (四性检测) takes its
authenticity and integrity results from here (:func:`verify_tree`).

Bounded: at most :data:`bagparse.MAX_FILES` files or tar members, tag files of at most
:data:`bagparse.MAX_TAG_BYTES` each and :data:`bagview.MAX_HELD_BYTES` in all held in
memory, findings summarised past the first few of a kind. A bag beyond a bound is "too
large" / "too many" (exit 1), never an internal error.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from archive_export import bagparse as P
from archive_export.bagparse import ERROR, WARNING, Finding, FindingList
from archive_export.bagview import CUSTODY_FILE as CUSTODY_FILE
from archive_export.bagview import KEYS_FILE as KEYS_FILE
from archive_export.bagview import BagTree, TagTooLarge, load_tree
from archive_export.bagview import BagUnusable as BagUnusable
from archive_export.msg import Msg
from archive_export.parallel_hash import (
    Item,
    Outcome,
    hash_names,
    make_hasher,
    start_hashing,
    work_units,
)
from catalog.chainrule import EventRecord, Issue, Trust, check_excerpt, parse_json
from catalog.signing import (
    fast_verify_available,
    judge_trust,
    key_id_of,
    public_raw,
    verify_signature,
)
from config.i18n import N_

SIGNATURE_FILE = "tagmanifest-sha256.txt.sig"
SIGNED_FILE = "tagmanifest-sha256.txt"
KEY_FILE = "signing-key.pem"
ANCHORS_FILE = "data/metadata/anchors.jsonl"
KEY_ID_LABEL = "Liuhen-Signing-Key-Id"
LIUHEN_MANIFESTS = ("sha256", "sha512", "sm3")


@dataclass
class BagReport:
    source: str
    container: str  # directory | tar | tar-stream
    version: str | None = None
    liuhen: bool = False
    payload_files: int = 0
    payload_bytes: int = 0
    algorithms: list[str] = field(default_factory=list)
    hashed_bytes: int = 0
    findings: list[Finding] = field(default_factory=FindingList)
    signature: dict[str, Any] = field(default_factory=dict)
    custody: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # What the checks read, for the four-properties check (not part of the JSON report):
    info: P.BagInfo = field(default_factory=P.BagInfo, repr=False)
    listed_payload: dict[str, list[str]] = field(default_factory=dict, repr=False)
    digests: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)  # computed
    custody_objects: frozenset[str] = frozenset()  # object ids the custody events name

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def kinds(self) -> set[str]:
        return {f.kind for f in self.errors}

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "container": self.container,
            "bagit_version": self.version,
            "liuhen_bag": self.liuhen,
            "payload_files": self.payload_files,
            "payload_bytes": self.payload_bytes,
            "algorithms": self.algorithms,
            "hashed_bytes": self.hashed_bytes,
            "signature": self.signature,
            "custody": self.custody,
            "seconds": round(self.seconds, 3),
            "errors": [f.as_dict() for f in self.errors],
            "warnings": [f.as_dict() for f in self.warnings],
        }


# -- verification -----------------------------------------------------------------------------


def verify_bag(
    path: Path | str,
    *,
    trusted: Mapping[str, Iterable[str]] | None = None,
    workers: int | None = None,
    only_algorithms: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BagReport:
    """Validate the bag at ``path`` (directory or tar) and report every problem.

    ``trusted`` is an auditor's key ring (station id → key ids, see
    :func:`catalog.signing.load_keyring`). ``only_algorithms`` limits fixity to some
    algorithms (the benchmark's breakdown); a real verification leaves it None.
    ``progress(done, total)`` is called from the hashing threads as work completes
    (units: bytes × algorithms).
    """
    t0 = time.perf_counter()
    path = Path(path)
    tree, container = load_tree(path)
    report = verify_tree(
        tree,
        BagReport(str(path), container),
        trusted=trusted,
        workers=workers,
        only=set(only_algorithms) if only_algorithms is not None else None,
        progress=progress,
    )
    report.seconds = time.perf_counter() - t0
    return report


def verify_tree(
    tree: BagTree,
    report: BagReport,
    *,
    trusted: Mapping[str, Iterable[str]] | None = None,
    workers: int | None = None,
    only: set[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    as_liuhen: bool = False,
) -> BagReport:
    """Verify a bag already listed by the reader (:mod:`archive_export.bagview`) into
    ``report``. ``as_liuhen``: hold it to what a 留痕 bag carries (signature, manifests,
    custody excerpt) even if its bag-info.txt does not say it is one (the
    four-properties check, which judges a bag as a 留痕 hand-over)."""
    if tree.too_many:
        # Listing stopped at a bound: what was listed is not the bag, so checking it
        # would only add findings about the part not read.
        report.findings.extend(tree.findings)
    else:
        _verify(_Run(tree, report, trusted, workers, only, progress), as_liuhen)
    assert isinstance(report.findings, FindingList)
    report.findings.close()
    return report


def _read_tag(tree: BagTree, rel: str, report: BagReport) -> bytes | None:
    try:
        return tree.read(rel)
    except TagTooLarge as exc:
        report.findings.append(Finding("too-large", rel, str(exc)))
        return None
    except (OSError, KeyError) as exc:
        report.findings.append(Finding("unreadable", rel, Msg(N_("cannot read: {exc}"), exc=exc)))
        return None


@dataclass
class _Run:
    """One verification: the bag, its report, the options, and what the steps read."""

    tree: BagTree
    report: BagReport
    trusted: Mapping[str, Iterable[str]] | None
    workers: int | None
    only: set[str] | None
    progress: Callable[[int, int], None] | None
    decl: P.Declaration | None = None
    version: tuple[int, int] = (1, 0)
    info: P.BagInfo = field(default_factory=P.BagInfo)
    info_name: str = "bag-info.txt"
    manifests: list[P.Manifest] = field(default_factory=list)
    payload: dict[str, int] = field(default_factory=dict)  # data/ file -> size
    fetch: dict[str, str] = field(default_factory=dict)
    nfc_disk: dict[str, str] = field(default_factory=dict)  # NFC name -> name in the bag
    # want: file -> the algorithms to compute (lists: a set per file costs 200 bytes more);
    # checks: (manifest, entry, file) to compare once hashed.
    want: dict[str, list[str]] = field(default_factory=dict)
    checks: list[tuple[P.Manifest, P.Entry, str]] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.report.findings.append(finding)

    def read_text(self, rel: str) -> str | None:
        """A tag file decoded in the bag's declared encoding (None: unreadable)."""
        data = _read_tag(self.tree, rel, self.report)
        if data is None:
            return None
        encoding = self.decl.encoding if self.decl is not None else "UTF-8"
        return P.decode_tag_file(data, rel, encoding, self.report.findings)

    @property
    def payload_ms(self) -> list[P.Manifest]:
        return [m for m in self.manifests if m.kind == "manifest"]

    @property
    def tag_ms(self) -> list[P.Manifest]:
        return [m for m in self.manifests if m.kind == "tagmanifest"]


def _verify(run: _Run, as_liuhen: bool) -> None:
    """Every check, in the order of the module doc; fixity hashes in the background while
    the signature and the custody excerpt are checked."""
    run.report.findings.extend(run.tree.findings)
    _read_declaration(run)
    _read_info(run)
    run.report.liuhen = as_liuhen or any(k.lower().startswith("liuhen-") for k, _ in run.info.items)
    _read_manifests(run)
    _check_manifest_set(run)
    _read_payload(run)
    _match_entries(run)
    _check_unlisted_payload(run)
    _check_tag_coverage(run)
    _check_oxum(run)
    _check_contents(run)


def _read_declaration(run: _Run) -> None:
    raw = _read_tag(run.tree, "bagit.txt", run.report) or b""
    run.decl = P.parse_bagit_txt(raw)
    run.report.findings.extend(run.decl.findings)
    run.report.version = run.decl.version_text
    run.version = run.decl.version if run.decl.version in P.SUPPORTED_VERSIONS else (1, 0)


def _read_info(run: _Run) -> None:
    """The metadata file: ``bag-info.txt``, ``package-info.txt`` before 0.96."""
    assert run.decl is not None
    run.info_name = info_name = run.decl.info_file
    if info_name in run.tree.files:
        text = run.read_text(info_name)
        if text is not None:
            run.info = P.parse_bag_info(text, info_name, run.version)
            run.report.findings.extend(run.info.findings)
    run.report.info = run.info
    other = "bag-info.txt" if info_name == "package-info.txt" else "package-info.txt"
    if other in run.tree.files:
        run.add(
            Finding(
                "version",
                other,
                Msg(
                    N_("BagIt {version_text} names its metadata file {info_name}, not {other}"),
                    version_text=run.decl.version_text,
                    info_name=info_name,
                    other=other,
                ),
                WARNING,
            )
        )


def _read_manifests(run: _Run) -> None:
    """Every payload and tag manifest of an algorithm this system can compute."""
    known = hash_names()
    for rel in sorted(r for r in run.tree.files if "/" not in r):
        kind = P.manifest_kind(rel)
        if kind is None:
            continue
        alg = kind[1]
        if alg not in known:
            run.add(
                Finding(
                    "unsupported-algorithm",
                    rel,
                    Msg(
                        N_(
                            "algorithm {alg!r} is not one this system can compute; this "
                            "manifest's checksums were NOT verified"
                        ),
                        alg=alg,
                    ),
                    WARNING,
                )
            )
            continue
        text = run.read_text(rel)
        if text is None:
            continue
        m = P.parse_manifest(rel, text, run.version, make_hasher_len(alg))
        run.report.findings.extend(m.findings)
        run.manifests.append(m)
    run.report.algorithms = sorted({m.algorithm for m in run.manifests})


def _check_manifest_set(run: _Run) -> None:
    """A payload manifest at all; for a 留痕 bag, each of its algorithms' manifests."""
    files = run.tree.files
    root_kinds = [P.manifest_kind(r) for r in files if "/" not in r]
    if not any(k is not None and k[0] == "manifest" for k in root_kinds):
        run.add(
            Finding(
                "missing-manifest", "", Msg(N_("no payload manifest (manifest-<algorithm>.txt)"))
            )
        )
    if not run.report.liuhen:
        return
    present = {m.algorithm for m in run.payload_ms} | {
        r[len("manifest-") : -4] for r in files if r.startswith("manifest-")
    }
    for alg in LIUHEN_MANIFESTS:
        if alg not in present:
            run.add(
                Finding(
                    "missing-manifest",
                    f"manifest-{alg}.txt",
                    Msg(N_("a 留痕 bag carries a {alg} payload manifest; it is missing"), alg=alg),
                )
            )
        if f"tagmanifest-{alg}.txt" not in files:
            run.add(
                Finding(
                    "missing-manifest",
                    f"tagmanifest-{alg}.txt",
                    Msg(N_("a 留痕 bag carries a {alg} tag manifest; it is missing"), alg=alg),
                )
            )


def _read_payload(run: _Run) -> None:
    """The payload on disk, its portability, and ``fetch.txt``."""
    tree, report = run.tree, run.report
    if "data" not in tree.dirs:
        run.add(
            Finding("missing-payload-dir", "data/", Msg(N_("there is no data/ payload directory")))
        )
    run.payload = {r: s for r, s in tree.files.items() if r.startswith("data/")}
    report.payload_files = len(run.payload)
    report.payload_bytes = sum(run.payload.values())
    report.findings.extend(P.portability_findings(run.payload))
    if "fetch.txt" in tree.files:
        text = run.read_text("fetch.txt")
        if text is not None:
            run.fetch, found = P.parse_fetch(text, run.version)
            report.findings.extend(found)
    for r in tree.files:
        run.nfc_disk.setdefault(unicodedata.normalize("NFC", r), r)


def _locate(run: _Run, entry_path: str, manifest: str, alt: str | None = None) -> str | None:
    """The file a manifest entry names, as it is in the bag (None: not there)."""
    files = run.tree.files
    if entry_path in files:
        return entry_path
    if alt is not None and alt in files:
        return alt  # a 0.97 bag whose maker percent-encoded the name (P.Entry.alt)
    alt = run.nfc_disk.get(unicodedata.normalize("NFC", entry_path))
    if alt is not None:
        run.add(
            Finding(
                "normalization-clash",
                manifest,
                Msg(
                    N_("{entry_path!r} is on disk as {alt!r} (different Unicode normalisation)"),
                    entry_path=entry_path,
                    alt=alt,
                ),
                WARNING,
            )
        )
        return alt
    return None


def _missing_entry(run: _Run, m: P.Manifest, e: P.Entry) -> Finding:
    if e.path in run.fetch:
        return Finding(
            "not-fetched",
            e.path,
            Msg(
                N_("listed in {name} and fetch.txt ({fetch}) but not fetched into the bag"),
                name=m.name,
                fetch=run.fetch[e.path],
            ),
        )
    if e.path in run.tree.dirs:
        return Finding(
            "manifest-format",
            m.name,
            Msg(N_("{path!r} is a directory; manifests list files only"), path=e.path),
            line=e.line,
        )
    return Finding(
        "missing-file",
        e.path,
        Msg(N_("listed in {name} (line {line}) but not in the bag"), name=m.name, line=e.line),
    )


def _match_entries(run: _Run) -> None:
    """Each manifest entry to its file: what to hash with which algorithm, and what is
    listed but missing."""
    listed_payload: dict[str, list[str]] = {}
    for m in run.manifests:
        for e in m.entries.values():
            actual = _locate(run, e.path, m.name, e.alt)
            if actual is None:
                run.add(_missing_entry(run, m, e))
                continue
            if m.kind == "manifest":
                listed_payload.setdefault(actual, []).append(m.name)
            if run.only is not None and m.algorithm not in run.only:
                continue
            run.want.setdefault(actual, []).append(m.algorithm)
            run.checks.append((m, e, actual))
    run.report.listed_payload = listed_payload


def _check_unlisted_payload(run: _Run) -> None:
    """Every payload file is in every payload manifest."""
    names = {m.name for m in run.payload_ms}
    listed = run.report.listed_payload
    for r in sorted(run.payload):
        got = set(listed.get(r, ()))
        if not got:
            run.add(
                Finding("unexpected-file", r, Msg(N_("is in data/ but in no payload manifest")))
            )
        elif got != names:
            for missing in sorted(names - got):
                run.add(
                    Finding(
                        "not-in-manifest",
                        r,
                        Msg(
                            N_("is in data/ and in {got} but not in {missing}"),
                            got=", ".join(sorted(got)),
                            missing=missing,
                        ),
                    )
                )


def _is_tag_manifest(rel: str) -> bool:
    return P.manifest_kind(rel) == ("tagmanifest", rel[len("tagmanifest-") : -4])


def _check_tag_coverage(run: _Run) -> None:
    """Tag files not covered by a tag manifest; tag manifests listing tag manifests."""
    for r in sorted(run.tree.files):
        if r.startswith("data/") or r == SIGNATURE_FILE or _is_tag_manifest(r):
            continue
        for m in run.tag_ms:
            if r not in m.entries:
                # A 留痕 bag's tag manifests list every tag file; RFC 8493 only says SHOULD.
                run.add(
                    Finding(
                        "unexpected-file",
                        r,
                        Msg(N_("tag file not listed in {name}"), name=m.name),
                        ERROR if run.report.liuhen else WARNING,
                    )
                )
    for m in run.tag_ms:
        for listed in m.entries:
            if _is_tag_manifest(listed):
                run.add(
                    Finding(
                        "manifest-format",
                        m.name,
                        Msg(
                            N_(
                                "lists the tag manifest {listed!r} (tag manifests must not list "
                                "tag manifests)"
                            ),
                            listed=listed,
                        ),
                        WARNING,
                    )
                )


def _check_oxum(run: _Run) -> None:
    """Payload-Oxum (every value: before 1.0 it may be repeated)."""
    report = run.report
    oxums = run.info.get_all("Payload-Oxum")
    for oxum_text in dict.fromkeys(oxums):
        oxum = P.parse_oxum(oxum_text)
        if oxum is not None and oxum != (report.payload_bytes, report.payload_files):
            run.add(
                Finding(
                    "oxum-mismatch",
                    run.info_name,
                    Msg(
                        N_(
                            "Payload-Oxum {oxum_text} but data/ holds {payload_bytes} bytes in "
                            "{payload_files} files"
                        ),
                        oxum_text=oxum_text[:100],
                        payload_bytes=report.payload_bytes,
                        payload_files=report.payload_files,
                    ),
                )
            )
    if not oxums and report.liuhen:
        run.add(
            Finding(
                "bag-info",
                run.info_name,
                Msg(N_("a 留痕 bag declares Payload-Oxum; it is missing")),
            )
        )


def _check_contents(run: _Run) -> None:
    """Fixity, with the signature and the custody excerpt checked meanwhile: the pool
    hashes while this thread checks them (neither needs the digests: they compare with
    the manifests, which the fixity check ties to the bytes)."""
    tree, report = run.tree, run.report
    custody: Callable[[], CustodyResult] | None = None
    if CUSTODY_FILE in tree.files and custody_within_bounds(tree, report):
        inp = custody_input(tree, report, *_manifest_digests(run.payload_ms), run.trusted)
        if inp is not None:
            custody = _start_custody(inp)
    elif CUSTODY_FILE not in tree.files and report.liuhen:
        run.add(
            Finding(
                "custody",
                CUSTODY_FILE,
                Msg(N_("a 留痕 bag carries a custody excerpt; it is missing")),
            )
        )
    pending = _fixity(tree, run.want, run.workers, run.progress)
    try:
        _check_signature(tree, report, run.info, run.trusted)
        if custody is not None:
            result = custody()
            report.findings.extend(result.findings)
            report.custody, report.custody_objects = result.summary, result.objects
    finally:
        outcomes = pending()  # never leave hashing threads behind, even on a bug above
    report.hashed_bytes = sum(o.size or 0 for o in outcomes.values())
    report.digests = {r: o.digests for r, o in outcomes.items() if o.error is None}
    _compare_digests(run, outcomes)
    _report_unreadable_once(report, outcomes)


def _compare_digests(run: _Run, outcomes: Mapping[str, Outcome]) -> None:
    for m, e, actual in run.checks:
        out = outcomes.get(actual)
        if out is None:
            continue
        if out.error:
            kind = "changed-during-verification" if out.changed else "unreadable"
            run.add(Finding(kind, actual, out.error))
            continue
        computed = out.digests.get(m.algorithm)
        if computed is None:
            run.add(
                Finding(
                    "not-verified",
                    actual,
                    Msg(
                        N_(
                            "{algorithm} could not be computed: a compressed tar streamed its "
                            "payload before {name}; decompress it and verify again"
                        ),
                        algorithm=m.algorithm,
                        name=m.name,
                    ),
                )
            )
        elif computed != e.digest:
            run.add(
                Finding(
                    "checksum-mismatch",
                    actual,
                    Msg(
                        N_("{algorithm} is {computed}, {name} line {line} says {digest}"),
                        algorithm=m.algorithm,
                        computed=computed,
                        name=m.name,
                        line=e.line,
                        digest=e.digest,
                    ),
                )
            )


def _report_unreadable_once(report: BagReport, outcomes: Mapping[str, Outcome]) -> None:
    """Outcomes reported once per file even when several manifests list it."""
    seen_unreadable: set[str] = set()
    deduped: list[Finding] = []
    for f in report.findings:
        if f.kind in {"unreadable", "changed-during-verification"} and f.path in outcomes:
            if f.path in seen_unreadable:
                continue
            seen_unreadable.add(f.path)
        deduped.append(f)
    report.findings[:] = deduped


def custody_within_bounds(tree: BagTree, report: BagReport) -> bool:
    """False (with a ``too-large`` finding) for a custody excerpt of more than MAX_LINES
    lines: its events are parsed into a list, which a blank-line bomb would blow up."""
    data = _read_tag(tree, CUSTODY_FILE, report)
    if data is None:
        return True  # the custody check reports it unreadable
    lines = data.count(b"\n") + data.count(b"\r")
    if lines <= P.MAX_LINES:
        return True
    report.findings.append(
        Finding(
            "too-large",
            CUSTODY_FILE,
            Msg(
                N_(
                    "{lines:,} lines, more than the {max_lines:,} this verifier reads; its events "
                    "were not checked"
                ),
                lines=lines,
                max_lines=P.MAX_LINES,
            ),
        )
    )
    return False


def make_hasher_len(algorithm: str) -> int | None:
    try:
        return len(make_hasher(algorithm).hexdigest())
    except (ValueError, TypeError):
        return None


def _fixity(
    tree: BagTree,
    want: Mapping[str, list[str]],
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> Callable[[], dict[str, Outcome]]:
    """Start hashing what the manifests list; the returned function waits for the digests."""
    if tree.streamed is not None:
        streamed = tree.streamed
        hashed = {
            r: Outcome(
                dict(streamed.get(r, {})), size=tree.files.get(r), error=tree.stream_errors.get(r)
            )
            for r in want
        }
        return lambda: hashed
    items = [Item(r, tree.source(r), tuple(sorted(set(algs)))) for r, algs in want.items()]
    if progress is None:
        return start_hashing(items, workers=workers).result
    total, done, lock = work_units(items), [0], threading.Lock()
    tick = progress
    # The hashers count bytes once per algorithm; people read the bytes of the bag.
    payload = sum(it.source.size for it in items)

    def count(units: int) -> None:
        with lock:
            done[0] += units
            now = done[0]
        tick(now * payload // total if total else 0, payload)

    return start_hashing(items, workers=workers, progress=count).result


# -- signature --------------------------------------------------------------------------------


def _check_signature(
    tree: BagTree, report: BagReport, info: P.BagInfo, trusted: Mapping[str, Iterable[str]] | None
) -> None:
    """The export signature: present, by the declared key, valid, and trusted or not."""
    has_sig, has_key = SIGNATURE_FILE in tree.files, KEY_FILE in tree.files
    sig = report.signature
    if not has_sig and not has_key:
        sig["status"] = "not signed"
        _unsigned(report, trusted)
        return
    if not has_sig or not has_key:
        missing = SIGNATURE_FILE if not has_sig else KEY_FILE
        sig["status"] = "incomplete"
        report.findings.append(
            Finding(
                "not-signed",
                missing,
                Msg(
                    N_("{missing} is missing, so the signature cannot be checked"), missing=missing
                ),
            )
        )
        return
    read = _signing_key(tree, report)
    if read is None:
        sig["status"] = "invalid"
        return
    raw, signature, signed = read
    key_id = key_id_of(raw)
    _check_key_id(report, info, key_id)
    if verify_signature(raw, signature, signed):
        sig["status"] = "valid"
    else:
        sig["status"] = "invalid"
        report.findings.append(
            Finding(
                "bad-signature",
                SIGNATURE_FILE,
                Msg(
                    N_("does not verify over {SIGNED_FILE} with {KEY_FILE} ({key_id})"),
                    SIGNED_FILE=SIGNED_FILE,
                    KEY_FILE=KEY_FILE,
                    key_id=key_id,
                ),
            )
        )
    _judge_trust(report, key_id, trusted)


def _unsigned(report: BagReport, trusted: Mapping[str, Iterable[str]] | None) -> None:
    if report.liuhen:
        report.findings.append(
            Finding(
                "not-signed",
                SIGNATURE_FILE,
                Msg(
                    N_("a 留痕 bag is signed ({SIGNATURE_FILE} by {KEY_FILE}); both are missing"),
                    SIGNATURE_FILE=SIGNATURE_FILE,
                    KEY_FILE=KEY_FILE,
                ),
            )
        )
    elif trusted is not None:
        # A key ring asks "signed by a trusted key?": an unsigned bag is not. Otherwise a
        # tampered bag re-made by any tool, labels and signature dropped, would pass.
        report.findings.append(
            Finding(
                "not-signed",
                SIGNATURE_FILE,
                Msg(
                    N_(
                        "a key ring was given but the bag is not signed (no {SIGNATURE_FILE}, no "
                        "{KEY_FILE})"
                    ),
                    SIGNATURE_FILE=SIGNATURE_FILE,
                    KEY_FILE=KEY_FILE,
                ),
            )
        )


def _signing_key(tree: BagTree, report: BagReport) -> tuple[bytes, bytes, bytes] | None:
    """The raw Ed25519 key of ``signing-key.pem``, the signature and the signed file
    (None: one is unreadable or not what it should be, and a finding says why)."""
    add = report.findings.append
    pem = _read_tag(tree, KEY_FILE, report)
    signature = _read_tag(tree, SIGNATURE_FILE, report)
    signed = _read_tag(tree, SIGNED_FILE, report) if SIGNED_FILE in tree.files else None
    if signed is None:
        add(Finding("bad-signature", SIGNED_FILE, Msg(N_("the signed file is missing"))))
        return None
    if pem is None or signature is None:
        return None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        add(Finding("signing-key", KEY_FILE, Msg(N_("not a PEM public key: {exc}"), exc=exc)))
        return None
    if not isinstance(key, Ed25519PublicKey):
        add(Finding("signing-key", KEY_FILE, Msg(N_("not an Ed25519 public key"))))
        return None
    return public_raw(key), signature, signed


def _check_key_id(report: BagReport, info: P.BagInfo, key_id: str) -> None:
    """The key is the one bag-info.txt declares."""
    report.signature["key_id"] = key_id
    declared = info.get(KEY_ID_LABEL)
    report.signature["declared_key_id"] = declared
    if declared is not None and declared != key_id:
        report.findings.append(
            Finding(
                "key-id-mismatch",
                KEY_FILE,
                Msg(
                    N_(
                        "key id {key_id} does not match {KEY_ID_LABEL} {declared} in bag-info.txt "
                        "(key replaced?)"
                    ),
                    key_id=key_id,
                    KEY_ID_LABEL=KEY_ID_LABEL,
                    declared=declared,
                ),
            )
        )
    elif declared is None and report.liuhen:
        report.findings.append(
            Finding(
                "key-id-mismatch",
                "bag-info.txt",
                Msg(N_("no {KEY_ID_LABEL}"), KEY_ID_LABEL=KEY_ID_LABEL),
            )
        )


def _judge_trust(
    report: BagReport, key_id: str, trusted: Mapping[str, Iterable[str]] | None
) -> None:
    sig = report.signature
    sig["trust"], sig["trusted_by"] = judge_trust(key_id, trusted)
    if sig["trust"] == "untrusted":
        report.findings.append(
            Finding(
                "untrusted-key",
                KEY_FILE,
                Msg(N_("{key_id} is in none of the given key rings"), key_id=key_id),
            )
        )


# -- custody excerpt --------------------------------------------------------------------------


@dataclass(frozen=True)
class CustodyInput:
    """What the custody check needs, as plain data (it may run in a child process)."""

    events: bytes
    keys: bytes | None
    digests_by_sha256: dict[str, str]  # payload sha256 -> path
    sm3_by_path: dict[str, str]
    sizes: dict[str, int]  # payload path -> size
    originals: dict[str, str]  # data/originals/... path -> its sha256 from the manifest
    liuhen: bool
    trusted: dict[str, set[str]]
    anchors: bytes | None = None  # the signed chain heads, when the bag carries them


@dataclass(frozen=True)
class CustodyResult:
    findings: list[Finding]
    summary: dict[str, Any]  # the report's "custody" section
    objects: frozenset[str]  # the object ids (sha256) the excerpt's events name


def _manifest_digests(payload_ms: list[P.Manifest]) -> tuple[dict[str, str], dict[str, str]]:
    """Payload path -> SHA-256 and path -> SM3, as the manifests list them."""
    sha_m = next((m for m in payload_ms if m.algorithm == "sha256"), None)
    sm3_m = next((m for m in payload_ms if m.algorithm == "sm3"), None)
    return (
        {p: e.digest for p, e in (sha_m.entries.items() if sha_m else ())},
        {p: e.digest for p, e in (sm3_m.entries.items() if sm3_m else ())},
    )


def custody_input(
    tree: BagTree,
    report: BagReport,
    sha256_of: Mapping[str, str],
    sm3_of: Mapping[str, str],
    trusted: Mapping[str, Iterable[str]] | None,
) -> CustodyInput | None:
    """The excerpt, its keys and anchors read from the bag, with the payload's digests
    (``sha256_of``, ``sm3_of``: path -> digest, from the manifests or, at export, as
    written) that the events are compared with. None: the excerpt is unreadable."""
    keys_data = None
    if KEYS_FILE in tree.files:
        keys_data = _read_tag(tree, KEYS_FILE, report)
    else:
        report.findings.append(
            Finding("custody", KEYS_FILE, Msg(N_("missing: custody signatures cannot be checked")))
        )
    raw_events = _read_tag(tree, CUSTODY_FILE, report)
    if raw_events is None:
        return None
    return CustodyInput(
        events=raw_events,
        keys=keys_data,
        digests_by_sha256={d: p for p, d in sha256_of.items()},
        sm3_by_path=dict(sm3_of),
        sizes={p: s for p, s in tree.files.items() if p.startswith("data/")},
        originals={
            p: sha256_of[p]
            for p in tree.files
            if p.startswith("data/originals/") and p in sha256_of
        },
        liuhen=report.liuhen,
        trusted={s: set(ids) for s, ids in (trusted or {}).items()},
        anchors=_read_tag(tree, ANCHORS_FILE, report) if ANCHORS_FILE in tree.files else None,
    )


# Above this many events the check runs beside the hashing: in a child process (OpenSSL's
# Ed25519 verification holds the GIL, ≈ 0.1–0.2 ms an event, which would stall the hashing
# threads), or, where a fork is unsafe, on a thread when libsodium verifies (its calls
# release the GIL).
CUSTODY_FORK_MIN = 500


def _start_custody(inp: CustodyInput) -> Callable[[], CustodyResult]:
    small = inp.events.count(b"\n") < CUSTODY_FORK_MIN
    if small or "fork" not in mp.get_all_start_methods() or threading.active_count() > 1:
        # No fork for a small excerpt, without fork, or with other threads whose locks
        # (OpenSSL's, logging's) a forked child could inherit held.
        if not small and fast_verify_available():
            return _custody_on_thread(inp)
        result = check_custody_excerpt(inp)
        result.summary["checked_in"] = "this process"
        return lambda: result
    # Forked before the hashing threads start, so no thread's lock is copied mid-use.
    pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("fork"))
    future = pool.submit(check_custody_excerpt, inp)

    def wait() -> CustodyResult:
        try:
            result = future.result()
        finally:
            pool.shutdown(wait=True)
        result.summary["checked_in"] = "child process"
        return result

    return wait


def _custody_on_thread(inp: CustodyInput) -> Callable[[], CustodyResult]:
    box: list[CustodyResult | BaseException] = []

    def run() -> None:
        try:
            box.append(check_custody_excerpt(inp))
        except BaseException as exc:  # re-raised in the waiting thread, as inline would
            box.append(exc)

    thread = threading.Thread(target=run, name="custody", daemon=True)
    thread.start()

    def wait() -> CustodyResult:
        thread.join()
        got = box[0]
        if isinstance(got, BaseException):
            raise got
        got.summary["checked_in"] = "this process"
        return got

    return wait


def check_custody_excerpt(inp: CustodyInput) -> CustodyResult:
    """The custody rule (:mod:`catalog.chainrule`, shared with `custody verify`) over the
    excerpt, its keys and its signed chain heads; then the digests the events name
    against the manifests. The four-properties check takes its custody result from here."""
    result = check_excerpt(
        inp.events, inp.keys, Trust.of(inp.trusted, bool(inp.trusted)), heads=inp.anchors
    )
    at_line = {n: ev for n, ev in result.events}
    findings = [_custody_finding(issue, at_line) for issue in result.issues]
    mentioned: set[str] = set()
    for number, ev in result.events:
        if ev.object_type in {"recording", "derivative"}:
            mentioned.add(ev.object_id)
            findings += _event_against_manifests(inp, number, ev)
    if inp.liuhen:
        findings += [
            Finding(
                "custody",
                path,
                Msg(N_("no custody event in the excerpt names this original")),
                WARNING,
            )
            for path, sha in sorted(inp.originals.items())
            if sha not in mentioned
        ]
    summary = {
        "events": len(result.events),
        "stations": result.stations,
        "links_checked": result.links,
        "keys": len(result.keys),
        "chain_heads": result.heads,
        "ok": not any(f.severity == ERROR for f in findings),
    }
    return CustodyResult(findings, summary, frozenset(ev.object_id for _n, ev in result.events))


def _event_against_manifests(inp: CustodyInput, number: int, ev: EventRecord) -> list[Finding]:
    """What an event says about an object the bag holds (its SM3, its size) must match
    the manifests."""
    path = inp.digests_by_sha256.get(ev.object_id)
    if path is None:
        return []
    try:
        details = parse_json(ev.details)
    except (ValueError, TypeError):
        details = {}
    if not isinstance(details, dict):
        details = {}
    found: list[Finding] = []
    sm3 = details.get("sm3")
    listed = inp.sm3_by_path.get(path)
    name = _event_name(ev)
    if sm3 and listed is not None and listed != str(sm3).lower():
        found.append(
            Finding(
                "custody-digest-mismatch",
                CUSTODY_FILE,
                Msg(
                    N_("{name}: says SM3 {sm3}, manifest-sm3.txt has {listed} for {path}"),
                    name=name,
                    sm3=sm3,
                    listed=listed,
                    path=path,
                ),
                ERROR,
                number,
            )
        )
    size = details.get("size")
    if isinstance(size, int) and path in inp.sizes and inp.sizes[path] != size:
        found.append(
            Finding(
                "custody-digest-mismatch",
                CUSTODY_FILE,
                Msg(
                    N_("{name}: says {size} bytes, {path} has {sizes}"),
                    name=name,
                    size=size,
                    path=path,
                    sizes=inp.sizes[path],
                ),
                ERROR,
                number,
            )
        )
    return found


def _event_name(ev: EventRecord) -> str:
    return (
        f"station {ev.station_id} event #{ev.seq} ({ev.action} on {ev.object_type} "
        f"{ev.object_id[:16]})"
    )


def _custody_finding(issue: Issue, at_line: Mapping[int, EventRecord]) -> Finding:
    """A rule issue as a finding on the file it concerns, naming the event."""
    if issue.part == "keys":
        return Finding("custody-" + issue.kind, KEYS_FILE, issue.detail)
    if issue.part == "anchors":
        return Finding("custody-" + issue.kind, ANCHORS_FILE, issue.detail, line=issue.line)
    ev = at_line.get(issue.line) if issue.line is not None else None
    detail = f"{_event_name(ev)}: {issue.detail}" if ev is not None else issue.detail
    return Finding("custody-" + issue.kind, CUSTODY_FILE, detail, line=issue.line)
