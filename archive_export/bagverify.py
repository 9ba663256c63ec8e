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

A tar is read in place: an uncompressed tar's members are read at their offsets and
hashed like files (in parallel); a compressed tar is streamed once, members hashed as
they come. Members that would escape (absolute names, ``..``, links) are reported, never
extracted. Nothing is ever written, and nothing is memory-mapped (a mapped file truncated
by someone else kills the process with SIGBUS; a read just comes back short).

Bounded: at most :data:`bagparse.MAX_FILES` files or tar members, tag files of at most
:data:`bagparse.MAX_TAG_BYTES` each and :data:`MAX_HELD_BYTES` in all held in memory,
findings summarised past the first few of a kind. A bag beyond a bound is "too large" /
"too many" (exit 1), never an internal error.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import posixpath
import stat
import tarfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from archive_export import bagparse as P
from archive_export.bagparse import ERROR, MAX_FILES, MAX_TAG_BYTES, WARNING, Finding, FindingList
from archive_export.parallel_hash import (
    FileSource,
    Item,
    Outcome,
    SliceSource,
    hash_names,
    make_hasher,
    start_hashing,
    work_units,
)
from catalog.chainrule import EventRecord, Issue, Trust, check_excerpt, parse_json
from catalog.signing import key_id_of, public_raw, verify_signature
from config.errors import EXIT_USAGE, LiuhenError

SIGNATURE_FILE = "tagmanifest-sha256.txt.sig"
SIGNED_FILE = "tagmanifest-sha256.txt"
KEY_FILE = "signing-key.pem"
CUSTODY_FILE = "data/metadata/custody.jsonl"
KEYS_FILE = "data/metadata/keys.json"
ANCHORS_FILE = "data/metadata/anchors.jsonl"
KEY_ID_LABEL = "Liuhen-Signing-Key-Id"
LIUHEN_MANIFESTS = ("sha256", "sha512", "sm3")
# Non-payload members of a compressed tar are held in memory until the stream ends (their
# manifests may come later); this is all of them together.
MAX_HELD_BYTES = 2 * MAX_TAG_BYTES
# Tar members of any kind (directories too) read before giving up.
MAX_MEMBERS = 2 * MAX_FILES
# Algorithms a compressed tar's payload is hashed with before any manifest was seen.
STREAM_DEFAULT = ("md5", "sha1", "sha256", "sha512", "sm3")


class BagUnusable(LiuhenError):
    """Not something that can be verified as a bag at all (exit 2)."""

    exit_code = EXIT_USAGE


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


# -- what a bag is made of, from a directory or a tar -------------------------------------------


class TagTooLarge(OSError):
    """A tag file too big to hold in memory: reported as ``too-large``, not parsed."""


@dataclass
class _Tree:
    files: dict[str, int] = field(default_factory=dict)  # relpath -> size (regular files)
    dirs: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=FindingList)
    root: Path | None = None  # directory bags
    tar: Path | None = None  # uncompressed tar bags: members read at their offsets
    offsets: dict[str, int] = field(default_factory=dict)  # tar member data offsets
    blobs: dict[str, bytes] = field(default_factory=dict)  # tag files read from a stream
    streamed: dict[str, dict[str, str]] | None = None  # digests computed while streaming
    stream_errors: dict[str, str] = field(default_factory=dict)  # member -> why unread
    too_many: bool = False  # listing stopped at a bound: the bag is not checked further

    def read(self, rel: str) -> bytes:
        if rel in self.blobs:
            return self.blobs[rel]
        size = self.files[rel]
        if size > MAX_TAG_BYTES or self.streamed is not None:
            # (Streamed: a member not kept in blobs was too big to keep.)
            raise TagTooLarge(
                f"{size:,} bytes, more than the {MAX_TAG_BYTES:,} a tag file "
                "may have here; not read"
            )
        if self.tar is not None:
            with open(self.tar, "rb", buffering=0) as f:
                data = os.pread(f.fileno(), size, self.offsets[rel])
        else:
            assert self.root is not None
            with open(self.root / rel, "rb", buffering=0) as f:
                data = f.read(size + 1)
        if len(data) != size:
            raise OSError(
                f"changed during verification: {size:,} bytes when listed, {len(data):,} read"
            )
        return data

    def source(self, rel: str) -> FileSource | SliceSource:
        if self.tar is not None:
            return SliceSource(self.tar, self.offsets[rel], self.files[rel])
        assert self.root is not None
        # A str, not a Path: a Path object costs several times the memory, per file.
        return FileSource(os.path.join(self.root, rel), self.files[rel])

    def count_file(self, where: str) -> bool:
        """False (and a ``too-many`` finding, once) when the bag already has MAX_FILES."""
        if len(self.files) < MAX_FILES:
            return True
        self.stop(f"the bag holds more than {MAX_FILES:,} files (stopped listing at {where})")
        return False

    def stop(self, detail: str) -> None:
        if not self.too_many:
            self.too_many = True
            self.findings.append(
                Finding(
                    "too-many",
                    "",
                    f"{detail}; this verifier checks "
                    "bags of at most that many: split the handover into "
                    "several bags",
                )
            )


def _walk_directory(root: Path) -> _Tree:
    tree = _Tree(root=root)
    stack = [""]
    while stack and not tree.too_many:
        rel_dir = stack.pop()
        try:
            it = os.scandir(root / rel_dir if rel_dir else root)
        except OSError as exc:
            tree.findings.append(
                Finding("unreadable", rel_dir or ".", f"cannot list directory: {exc.strerror}")
            )
            continue
        with it:
            for e in it:
                if not _walk_entry(tree, e, f"{rel_dir}/{e.name}" if rel_dir else e.name, stack):
                    break
    return tree


def _walk_entry(tree: _Tree, e: os.DirEntry[str], rel: str, stack: list[str]) -> bool:
    """Record one directory entry; False once the bag is over its bounds."""
    try:
        st = e.stat(follow_symlinks=False)
    except OSError as exc:
        tree.findings.append(Finding("unreadable", rel, f"cannot stat: {exc.strerror}"))
        return True
    if stat.S_ISLNK(st.st_mode):
        # Never followed: a link could point outside the bag.
        tree.findings.append(
            Finding(
                "link", rel, "is a symbolic link (not followed; a bag holds regular files only)"
            )
        )
    elif stat.S_ISDIR(st.st_mode):
        if len(tree.dirs) >= MAX_MEMBERS:
            tree.stop(f"the bag holds more than {MAX_MEMBERS:,} folders (stopped at {rel})")
            return False
        tree.dirs.add(rel)
        stack.append(rel)
    elif stat.S_ISREG(st.st_mode):
        if not tree.count_file(rel):
            return False
        tree.files[rel] = st.st_size
    else:
        tree.findings.append(
            Finding("special-file", rel, "is not a regular file (device, fifo or socket)")
        )
    return True


def _member_problem(name: str) -> str | None:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute member name"
    if ".." in name.split("/"):
        return "member name contains '..'"
    return None


def _tar_root(names: Iterable[str]) -> str:
    """The folder the bag sits in inside the tar ("" when bagit.txt is at the top)."""
    names = set(names)
    if "bagit.txt" in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    for top in sorted(tops):
        if f"{top}/bagit.txt" in names:
            return top + "/"
    raise BagUnusable(
        "the tar holds no bagit.txt (at the top or in one top-level folder)",
        hint="is this a BagIt bag? a 留痕 export tar holds one folder with the bag",
    )


def _norm_member(name: str) -> str:
    """The path a member lands on when extracted: '.' and empty segments collapsed, so
    that 'bag/./data/x' or 'bag//data/x' is seen as the 'bag/data/x' it would replace.
    ('..' never gets here: such members are rejected first.)"""
    if not name:
        return ""
    name = posixpath.normpath(name)
    return "" if name == "." else name  # "." / "./": the tar's top itself


@dataclass(frozen=True, slots=True)
class _Member:
    """What the verifier keeps of a tar header (a TarInfo is several times bigger)."""

    name: str
    type: str  # file | dir | link | other
    size: int
    offset: int
    linkname: str

    @classmethod
    def of(cls, m: tarfile.TarInfo) -> _Member:
        if m.issym() or m.islnk():
            kind = "link"
        elif m.isdir():
            kind = "dir"
        elif m.isreg() and not m.issparse():
            kind = "file"
        else:
            kind = "other"
        return cls(m.name, kind, m.size, m.offset_data, m.linkname)


def _add_member(tree: _Tree, m: _Member, rel: str) -> bool:
    """Record a member; True when it is a regular file whose bytes belong to the bag."""
    if m.type == "link":
        tree.findings.append(
            Finding("link", rel, f"tar member is a link to {m.linkname!r} (never followed)")
        )
    elif m.type == "dir":
        tree.dirs.add(rel)
    elif m.type == "file":
        if rel in tree.files:
            tree.findings.append(
                Finding(
                    "duplicate-member",
                    rel,
                    "appears more than once in the tar (a later copy "
                    "would silently replace the first on extraction)",
                )
            )
            return False
        if not tree.count_file(rel):
            return False
        tree.files[rel] = m.size
        parts = rel.split("/")
        for i in range(1, len(parts)):
            tree.dirs.add("/".join(parts[:i]))
        return True
    else:
        tree.findings.append(Finding("special-file", rel, "tar member is not a regular file"))
    return False


def _tar_members(tf: tarfile.TarFile, tree: _Tree) -> Iterator[tarfile.TarInfo]:
    """Members one at a time, at most MAX_MEMBERS; tarfile's own list of every member it
    has read (TarFile.members) is emptied as we go, so memory does not grow with them."""
    count = 0
    while True:
        try:
            m = tf.next()
        except P.TarHeaderTooLarge as exc:  # not read: the verdict is "too large"
            tree.findings.append(Finding("too-large", "", f"{exc}; not read"))
            tree.too_many = True  # not checked further: the rest of the tar is unknown
            return
        if m is None:
            return
        cast(Any, tf).members.clear()  # (TarFile.members is not in the type stubs)
        count += 1
        if count > MAX_MEMBERS or tree.too_many:
            tree.stop(
                f"the tar holds more than {MAX_MEMBERS:,} members (stopped reading it at {m.name})"
            )
            return
        yield m


def _open_tar(path: Path) -> _Tree:
    tree = _Tree(tar=path)
    members: list[_Member] = []
    try:
        with (
            open(path, "rb") as fh,
            tarfile.open(fileobj=fh, mode="r:", tarinfo=P.BoundedTarInfo) as tf,
        ):
            length = os.fstat(fh.fileno()).st_size
            # Headers only: next() seeks over member data, cheap for an uncompressed file.
            members = [_Member.of(m) for m in _tar_members(tf, tree)]
    except (tarfile.TarError, EOFError, OSError):
        return _stream_tar(path)
    if tree.too_many:
        return tree  # not checked further: a root guessed from part of it would mislead
    root = _tar_root(_norm_member(m.name) for m in members if not _member_problem(m.name))
    regular: list[tuple[str, _Member]] = []
    for m in members:
        name = _norm_member(m.name)
        why = _member_problem(m.name)
        if why:
            tree.findings.append(Finding("unsafe-path", m.name, f"{why} (never extracted)"))
            continue
        if not name or name + "/" == root:
            continue
        if root and not name.startswith(root):
            tree.findings.append(
                Finding("unexpected-file", name, f"tar member outside the bag folder {root!r}")
            )
            continue
        if _add_member(tree, m, name[len(root) :]):
            regular.append((name[len(root) :], m))
    for rel, m in regular:
        if m.offset + m.size > length:
            # A cut-off tar: the member's header is there, not all of its bytes.
            tree.findings.append(
                Finding(
                    "unreadable",
                    rel,
                    f"truncated: the tar ends {m.offset + m.size - length} bytes into it",
                )
            )
            del tree.files[rel]
            continue
        tree.offsets[rel] = m.offset
    return tree


def _stream_tar(path: Path) -> _Tree:
    """A compressed (or otherwise unseekable) tar: one pass, hashing members as they come."""
    tree = _Tree(streamed={})
    assert tree.streamed is not None
    algorithms: set[str] = set()
    root: str | None = None
    current: str | None = None  # the member being read
    try:
        with tarfile.open(path, mode="r|*", tarinfo=P.BoundedTarInfo) as tf:
            for m in _tar_members(tf, tree):
                current = None
                name = _norm_member(m.name)
                why = _member_problem(m.name)
                if why:
                    tree.findings.append(Finding("unsafe-path", m.name, f"{why} (never extracted)"))
                    continue
                if not name:
                    continue
                if root is None:
                    # Guessed from the first member (a stream cannot look ahead): a file
                    # at the top, or anything under data/, means the bag is the tar's top
                    # (`tar czf x.tgz -C bag .` starts with ./ then any entry); otherwise
                    # the bag is that top-level folder.
                    top = name.split("/", 1)[0]
                    root = "" if top == "data" or ("/" not in name and not m.isdir()) else top + "/"
                if name + "/" == root:
                    continue
                if root and not name.startswith(root):
                    tree.findings.append(
                        Finding(
                            "unexpected-file", name, f"tar member outside the bag folder {root!r}"
                        )
                    )
                    continue
                rel = name[len(root) :]
                if not _add_member(tree, _Member.of(m), rel):
                    continue
                f = tf.extractfile(m)
                assert f is not None
                current = rel
                _take_member(tree, rel, f, m.size, algorithms)
                current = None
    except (tarfile.TarError, EOFError, OSError) as exc:
        if current is not None:
            why = f"cannot read: the tar ends inside it ({exc})"
            tree.stream_errors[current] = why
            tree.findings.append(Finding("unreadable", current, why))
            tree.blobs.pop(current, None)
        if not tree.files:
            raise BagUnusable(
                f"{path}: not a readable tar: {exc}",
                hint="give a bag directory or a .tar made by 'liuhen export'",
            ) from exc
        tree.findings.append(Finding("unreadable", str(path), f"the tar is damaged: {exc}"))
    if (root is None or "bagit.txt" not in tree.files) and not tree.too_many:
        raise BagUnusable(f"{path}: the tar holds no bagit.txt")
    for rel, data in tree.blobs.items():
        tree.streamed[rel] = {a: _digest(a, data) for a in algorithms | set(STREAM_DEFAULT)}
    return tree


def _take_member(tree: _Tree, rel: str, f: IO[bytes], size: int, algorithms: set[str]) -> None:
    """Hash a payload member as it passes; keep a tag file (or the custody excerpt) whole,
    within the bounds, to parse and hash once every manifest has been seen."""
    assert tree.streamed is not None
    if rel.startswith("data/") and rel not in (CUSTODY_FILE, KEYS_FILE):
        # Manifests may come after the payload (tar sorts "data" before "manifest-…"):
        # hash with the usual algorithms and any seen so far.
        tree.streamed[rel] = _hash_stream(f, algorithms | set(STREAM_DEFAULT))
        return
    held = sum(len(b) for b in tree.blobs.values())
    if size > MAX_TAG_BYTES or held + size > MAX_HELD_BYTES:
        # Not kept (a gzip bomb of zeros costs nothing on disk): reading it is reported
        # as too large, and its digests are unknown, so it cannot pass a manifest either.
        why = (
            f"{size:,} bytes, more than the {MAX_TAG_BYTES:,} a tag file may have here"
            if size <= MAX_TAG_BYTES
            else f"the tag files before it already hold {held:,} bytes in memory"
        )
        tree.findings.append(Finding("too-large", rel, f"{why}; not read"))
        tree.stream_errors[rel] = f"too large to check ({why})"
        return
    tree.blobs[rel] = f.read(size)
    kind = P.manifest_kind(rel)
    if kind and kind[1] in hash_names():
        algorithms.add(kind[1])


def _digest(algorithm: str, data: bytes) -> str:
    h = make_hasher(algorithm)
    h.update(data)
    return h.hexdigest()


def _hash_stream(f: IO[bytes], algorithms: Iterable[str]) -> dict[str, str]:
    hashers = {a: make_hasher(a) for a in algorithms}
    while chunk := f.read(4 << 20):
        for h in hashers.values():
            h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _load(path: Path) -> tuple[_Tree, str]:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise BagUnusable(f"{path}: no such file or directory") from exc
    except OSError as exc:
        raise BagUnusable(f"{path}: cannot read: {exc.strerror}") from exc
    if stat.S_ISDIR(st.st_mode):
        tree = _walk_directory(path)
        if "bagit.txt" not in tree.files and not tree.too_many:
            raise BagUnusable(
                f"{path}: no bagit.txt: not a BagIt bag",
                hint="give the bag's top folder (the one holding bagit.txt and data/), or its .tar",
            )
        return tree, "directory"
    if not tarfile.is_tarfile(path):
        raise BagUnusable(
            f"{path}: neither a bag directory nor a tar",
            hint="give a bag folder or a .tar made by 'liuhen export'",
        )
    tree = _open_tar(path)
    return tree, "tar-stream" if tree.streamed is not None else "tar"


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
    tree, container = _load(path)
    report = BagReport(str(path), container)
    if tree.too_many:
        # Listing stopped at a bound: what was listed is not the bag, so checking it
        # would only add findings about the part not read.
        report.findings.extend(tree.findings)
    else:
        _verify(
            tree,
            report,
            trusted,
            workers,
            set(only_algorithms) if only_algorithms is not None else None,
            progress,
        )
    assert isinstance(report.findings, FindingList)
    report.findings.close()
    report.seconds = time.perf_counter() - t0
    return report


def _read_tag(tree: _Tree, rel: str, report: BagReport) -> bytes | None:
    try:
        return tree.read(rel)
    except TagTooLarge as exc:
        report.findings.append(Finding("too-large", rel, str(exc)))
        return None
    except (OSError, KeyError) as exc:
        report.findings.append(Finding("unreadable", rel, f"cannot read: {exc}"))
        return None


def _verify(
    tree: _Tree,
    report: BagReport,
    trusted: Mapping[str, Iterable[str]] | None,
    workers: int | None,
    only: set[str] | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    add = report.findings.append
    report.findings.extend(tree.findings)
    raw = _read_tag(tree, "bagit.txt", report) or b""
    decl = P.parse_bagit_txt(raw)
    report.findings.extend(decl.findings)
    report.version = decl.version_text
    version = decl.version if decl.version in P.SUPPORTED_VERSIONS else (1, 0)

    # Metadata file.
    info = P.BagInfo()
    info_name = decl.info_file
    if info_name in tree.files:
        data = _read_tag(tree, info_name, report)
        if data is not None:
            info = P.parse_bag_info(
                P.decode_tag_file(data, info_name, decl.encoding, report.findings),
                info_name,
                version,
            )
            report.findings.extend(info.findings)
    other_info = "bag-info.txt" if info_name == "package-info.txt" else "package-info.txt"
    if other_info in tree.files:
        add(
            Finding(
                "version",
                other_info,
                f"BagIt {decl.version_text} names its metadata file {info_name}, not {other_info}",
                WARNING,
            )
        )
    report.liuhen = any(k.lower().startswith("liuhen-") for k, _ in info.items)

    # Manifests.
    known = hash_names()
    manifests: list[P.Manifest] = []
    for rel in sorted(r for r in tree.files if "/" not in r):
        kind = P.manifest_kind(rel)
        if kind is None:
            continue
        alg = kind[1]
        if alg not in known:
            add(
                Finding(
                    "unsupported-algorithm",
                    rel,
                    f"algorithm {alg!r} is not one this "
                    "system can compute; this manifest's checksums were NOT verified",
                    WARNING,
                )
            )
            continue
        data = _read_tag(tree, rel, report)
        if data is None:
            continue
        text = P.decode_tag_file(data, rel, decl.encoding, report.findings)
        m = P.parse_manifest(rel, text, version, make_hasher_len(alg))
        report.findings.extend(m.findings)
        manifests.append(m)
    payload_ms = [m for m in manifests if m.kind == "manifest"]
    tag_ms = [m for m in manifests if m.kind == "tagmanifest"]
    root_kinds = [P.manifest_kind(r) for r in tree.files if "/" not in r]
    if not any(k is not None and k[0] == "manifest" for k in root_kinds):
        add(Finding("missing-manifest", "", "no payload manifest (manifest-<algorithm>.txt)"))
    if report.liuhen:
        present = {m.algorithm for m in payload_ms} | {
            r[len("manifest-") : -4] for r in tree.files if r.startswith("manifest-")
        }
        for alg in LIUHEN_MANIFESTS:
            if alg not in present:
                add(
                    Finding(
                        "missing-manifest",
                        f"manifest-{alg}.txt",
                        f"a 留痕 bag carries a {alg} payload manifest; it is missing",
                    )
                )
            if f"tagmanifest-{alg}.txt" not in tree.files:
                add(
                    Finding(
                        "missing-manifest",
                        f"tagmanifest-{alg}.txt",
                        f"a 留痕 bag carries a {alg} tag manifest; it is missing",
                    )
                )
    report.algorithms = sorted({m.algorithm for m in manifests})

    # Payload on disk.
    if "data" not in tree.dirs:
        add(Finding("missing-payload-dir", "data/", "there is no data/ payload directory"))
    payload = {r: s for r, s in tree.files.items() if r.startswith("data/")}
    report.payload_files = len(payload)
    report.payload_bytes = sum(payload.values())
    report.findings.extend(P.portability_findings(payload))
    fetch: dict[str, str] = {}
    if "fetch.txt" in tree.files:
        data = _read_tag(tree, "fetch.txt", report)
        if data is not None:
            fetch, found = P.parse_fetch(
                P.decode_tag_file(data, "fetch.txt", decl.encoding, report.findings), version
            )
            report.findings.extend(found)
    nfc_disk: dict[str, str] = {}
    for r in tree.files:
        nfc_disk.setdefault(unicodedata.normalize("NFC", r), r)

    def locate(entry_path: str, manifest: str, alt: str | None = None) -> str | None:
        if entry_path in tree.files:
            return entry_path
        if alt is not None and alt in tree.files:
            return alt  # a 0.97 bag whose maker percent-encoded the name (P.Entry.alt)
        alt = nfc_disk.get(unicodedata.normalize("NFC", entry_path))
        if alt is not None:
            add(
                Finding(
                    "normalization-clash",
                    manifest,
                    f"{entry_path!r} is on disk as {alt!r} (different Unicode normalisation)",
                    WARNING,
                )
            )
            return alt
        return None

    # want: file -> the algorithms to compute; checks: (manifest, entry, file) to compare.
    want: dict[str, list[str]] = {}  # (lists: a set per file costs 200 bytes more)
    checks: list[tuple[P.Manifest, P.Entry, str]] = []
    listed_payload: dict[str, list[str]] = {}
    for m in manifests:
        for e in m.entries.values():
            actual = locate(e.path, m.name, e.alt)
            if actual is None:
                if e.path in fetch:
                    add(
                        Finding(
                            "not-fetched",
                            e.path,
                            f"listed in {m.name} and fetch.txt "
                            f"({fetch[e.path]}) but not fetched into the bag",
                        )
                    )
                elif e.path in tree.dirs:
                    add(
                        Finding(
                            "manifest-format",
                            m.name,
                            f"{e.path!r} is a directory; manifests list files only",
                            line=e.line,
                        )
                    )
                else:
                    add(
                        Finding(
                            "missing-file",
                            e.path,
                            f"listed in {m.name} (line {e.line}) but not in the bag",
                        )
                    )
                continue
            if m.kind == "manifest":
                listed_payload.setdefault(actual, []).append(m.name)
            if only is not None and m.algorithm not in only:
                continue
            want.setdefault(actual, []).append(m.algorithm)
            checks.append((m, e, actual))
    names = {m.name for m in payload_ms}
    for r in sorted(payload):
        got = set(listed_payload.get(r, ()))
        if not got:
            add(Finding("unexpected-file", r, "is in data/ but in no payload manifest"))
        elif got != names:
            for missing in sorted(names - got):
                add(
                    Finding(
                        "not-in-manifest",
                        r,
                        f"is in data/ and in {', '.join(sorted(got))} but not in {missing}",
                    )
                )

    # Tag files not covered by a tag manifest.
    if tag_ms:
        for r in sorted(tree.files):
            if r.startswith("data/") or r == SIGNATURE_FILE:
                continue
            if P.manifest_kind(r) == ("tagmanifest", r[len("tagmanifest-") : -4]):
                continue
            for m in tag_ms:
                if r not in m.entries:
                    # A 留痕 bag's tag manifests list every tag file; RFC 8493 only says SHOULD.
                    add(
                        Finding(
                            "unexpected-file",
                            r,
                            f"tag file not listed in {m.name}",
                            ERROR if report.liuhen else WARNING,
                        )
                    )
        for m in tag_ms:
            for listed in m.entries:
                if P.manifest_kind(listed) == ("tagmanifest", listed[len("tagmanifest-") : -4]):
                    add(
                        Finding(
                            "manifest-format",
                            m.name,
                            f"lists the tag manifest {listed!r} "
                            "(tag manifests must not list tag manifests)",
                            WARNING,
                        )
                    )

    # Payload-Oxum (every value: before 1.0 it may be repeated).
    oxums = info.get_all("Payload-Oxum")
    for oxum_text in dict.fromkeys(oxums):
        oxum = P.parse_oxum(oxum_text)
        if oxum is not None and oxum != (report.payload_bytes, report.payload_files):
            add(
                Finding(
                    "oxum-mismatch",
                    info_name,
                    f"Payload-Oxum {oxum_text[:100]} but data/ holds {report.payload_bytes} "
                    f"bytes in {report.payload_files} files",
                )
            )
    if not oxums and report.liuhen:
        add(Finding("bag-info", info_name, "a 留痕 bag declares Payload-Oxum; it is missing"))

    # Fixity: the pool hashes while this thread checks the signature and the custody
    # excerpt (neither needs the digests: they compare with the manifests, which the
    # fixity check ties to the bytes).
    custody: Callable[[], tuple[list[Finding], dict[str, Any]]] | None = None
    if CUSTODY_FILE in tree.files and not _custody_within_bounds(tree, report):
        pass  # reported; its lines are not parsed one by one
    elif CUSTODY_FILE in tree.files:
        inp = _custody_input(tree, report, payload_ms, trusted)
        if inp is not None:
            custody = _start_custody(inp)
    elif report.liuhen:
        add(Finding("custody", CUSTODY_FILE, "a 留痕 bag carries a custody excerpt; it is missing"))
    pending = _fixity(tree, want, workers, progress)
    try:
        _check_signature(tree, report, info, trusted)
        if custody is not None:
            found, report.custody = custody()
            report.findings.extend(found)
    finally:
        outcomes = pending()  # never leave hashing threads behind, even on a bug above
    report.hashed_bytes = sum(o.size or 0 for o in outcomes.values())
    for m, e, actual in checks:
        out = outcomes.get(actual)
        if out is None:
            continue
        if out.error:
            add(
                Finding(
                    "changed-during-verification" if out.changed else "unreadable",
                    actual,
                    out.error,
                )
            )
            continue
        computed = out.digests.get(m.algorithm)
        if computed is None:
            add(
                Finding(
                    "not-verified",
                    actual,
                    f"{m.algorithm} could not be computed: a "
                    f"compressed tar streamed its payload before {m.name}; decompress it "
                    "and verify again",
                )
            )
            continue
        if computed != e.digest:
            add(
                Finding(
                    "checksum-mismatch",
                    actual,
                    f"{m.algorithm} is {computed}, {m.name} line {e.line} says {e.digest}",
                )
            )
    # Outcomes reported once per file even when several manifests list it.
    seen_unreadable: set[str] = set()
    deduped: list[Finding] = []
    for f in report.findings:
        if f.kind in {"unreadable", "changed-during-verification"} and f.path in outcomes:
            if f.path in seen_unreadable:
                continue
            seen_unreadable.add(f.path)
        deduped.append(f)
    report.findings[:] = deduped


def _custody_within_bounds(tree: _Tree, report: BagReport) -> bool:
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
            f"{lines:,} lines, more than the "
            f"{P.MAX_LINES:,} this verifier reads; its events were not "
            "checked",
        )
    )
    return False


def make_hasher_len(algorithm: str) -> int | None:
    try:
        return len(make_hasher(algorithm).hexdigest())
    except (ValueError, TypeError):
        return None


def _fixity(
    tree: _Tree,
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

    def count(units: int) -> None:
        with lock:
            done[0] += units
            now = done[0]
        tick(now, total)

    return start_hashing(items, workers=workers, progress=count).result


# -- signature --------------------------------------------------------------------------------


def _trust_of(key_id: str, trusted: Mapping[str, Iterable[str]] | None) -> list[str]:
    if not trusted:
        return []
    return sorted(s for s, ids in trusted.items() if key_id in set(ids))


def _check_signature(
    tree: _Tree, report: BagReport, info: P.BagInfo, trusted: Mapping[str, Iterable[str]] | None
) -> None:
    add = report.findings.append
    has_sig, has_key = SIGNATURE_FILE in tree.files, KEY_FILE in tree.files
    sig = report.signature
    if not has_sig and not has_key:
        sig["status"] = "not signed"
        if report.liuhen:
            add(
                Finding(
                    "not-signed",
                    SIGNATURE_FILE,
                    f"a 留痕 bag is signed ({SIGNATURE_FILE} by {KEY_FILE}); both are missing",
                )
            )
        elif trusted is not None:
            # A key ring asks "signed by a trusted key?": an unsigned bag is not. Otherwise a
            # tampered bag re-made by any tool, labels and signature dropped, would pass.
            add(
                Finding(
                    "not-signed",
                    SIGNATURE_FILE,
                    f"a key ring was given but the bag is "
                    f"not signed (no {SIGNATURE_FILE}, no {KEY_FILE})",
                )
            )
        return
    if not has_sig or not has_key:
        missing = SIGNATURE_FILE if not has_sig else KEY_FILE
        sig["status"] = "incomplete"
        add(
            Finding(
                "not-signed", missing, f"{missing} is missing, so the signature cannot be checked"
            )
        )
        return
    pem = _read_tag(tree, KEY_FILE, report)
    signature = _read_tag(tree, SIGNATURE_FILE, report)
    signed = _read_tag(tree, SIGNED_FILE, report) if SIGNED_FILE in tree.files else None
    if signed is None:
        sig["status"] = "invalid"
        add(Finding("bad-signature", SIGNED_FILE, "the signed file is missing"))
        return
    if pem is None or signature is None:
        sig["status"] = "invalid"
        return
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        sig["status"] = "invalid"
        add(Finding("signing-key", KEY_FILE, f"not a PEM public key: {exc}"))
        return
    if not isinstance(key, Ed25519PublicKey):
        sig["status"] = "invalid"
        add(Finding("signing-key", KEY_FILE, "not an Ed25519 public key"))
        return
    raw = public_raw(key)
    key_id = key_id_of(raw)
    sig["key_id"] = key_id
    declared = info.get(KEY_ID_LABEL)
    sig["declared_key_id"] = declared
    if declared is not None and declared != key_id:
        add(
            Finding(
                "key-id-mismatch",
                KEY_FILE,
                f"key id {key_id} does not match "
                f"{KEY_ID_LABEL} {declared} in bag-info.txt (key replaced?)",
            )
        )
    elif declared is None and report.liuhen:
        add(Finding("key-id-mismatch", "bag-info.txt", f"no {KEY_ID_LABEL}"))
    if verify_signature(raw, signature, signed):
        sig["status"] = "valid"
    else:
        sig["status"] = "invalid"
        add(
            Finding(
                "bad-signature",
                SIGNATURE_FILE,
                f"does not verify over {SIGNED_FILE} with {KEY_FILE} ({key_id})",
            )
        )
    stations = _trust_of(key_id, trusted)
    sig["trusted_by"] = stations
    if stations:
        sig["trust"] = "trusted"
    elif trusted is not None:  # an empty ring trusts nothing; it is not "no ring"
        sig["trust"] = "untrusted"
        add(Finding("untrusted-key", KEY_FILE, f"{key_id} is in none of the given key rings"))
    else:
        sig["trust"] = "self-declared"


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


def _custody_input(
    tree: _Tree,
    report: BagReport,
    payload_ms: list[P.Manifest],
    trusted: Mapping[str, Iterable[str]] | None,
) -> CustodyInput | None:
    keys_data = None
    if KEYS_FILE in tree.files:
        keys_data = _read_tag(tree, KEYS_FILE, report)
    else:
        report.findings.append(
            Finding("custody", KEYS_FILE, "missing: custody signatures cannot be checked")
        )
    raw_events = _read_tag(tree, CUSTODY_FILE, report)
    if raw_events is None:
        return None
    sha_m = next((m for m in payload_ms if m.algorithm == "sha256"), None)
    sm3_m = next((m for m in payload_ms if m.algorithm == "sm3"), None)
    sha_entries = sha_m.entries if sha_m else {}
    return CustodyInput(
        events=raw_events,
        keys=keys_data,
        digests_by_sha256={e.digest: p for p, e in sha_entries.items()},
        sm3_by_path={p: e.digest for p, e in (sm3_m.entries.items() if sm3_m else ())},
        sizes={p: s for p, s in tree.files.items() if p.startswith("data/")},
        originals={
            p: sha_entries[p].digest
            for p in tree.files
            if p.startswith("data/originals/") and p in sha_entries
        },
        liuhen=report.liuhen,
        trusted={s: set(ids) for s, ids in (trusted or {}).items()},
        anchors=_read_tag(tree, ANCHORS_FILE, report) if ANCHORS_FILE in tree.files else None,
    )


# Above this many events the check runs in a child process: Ed25519 verification holds
# the GIL (≈ 0.1–0.2 ms an event), which would otherwise stall the hashing threads.
CUSTODY_FORK_MIN = 500


def _start_custody(inp: CustodyInput) -> Callable[[], tuple[list[Finding], dict[str, Any]]]:
    if (
        inp.events.count(b"\n") < CUSTODY_FORK_MIN
        or "fork" not in mp.get_all_start_methods()
        or threading.active_count() > 1
    ):
        # Inline: a small excerpt, no fork, or other threads whose locks (OpenSSL's,
        # logging's) a forked child could inherit held.
        result = check_custody_excerpt(inp)
        result[1]["checked_in"] = "this process"
        return lambda: result
    # Forked before the hashing threads start, so no thread's lock is copied mid-use.
    pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("fork"))
    future = pool.submit(check_custody_excerpt, inp)

    def wait() -> tuple[list[Finding], dict[str, Any]]:
        try:
            found, summary = future.result()
        finally:
            pool.shutdown(wait=True)
        summary["checked_in"] = "child process"
        return found, summary

    return wait


def check_custody_excerpt(inp: CustodyInput) -> tuple[list[Finding], dict[str, Any]]:
    """The custody rule (:mod:`catalog.chainrule`, shared with `custody verify` and the
    four-properties check) over the excerpt, its keys and its signed chain heads; then
    the digests the events name against the manifests."""
    result = check_excerpt(
        inp.events, inp.keys, Trust.of(inp.trusted, bool(inp.trusted)), heads=inp.anchors
    )
    findings: list[Finding] = []
    add = findings.append
    at_line = {n: ev for n, ev in result.events}
    for issue in result.issues:
        add(_custody_finding(issue, at_line))
    by_sha = inp.digests_by_sha256
    mentioned: set[str] = set()
    for number, ev in result.events:
        if ev.object_type not in {"recording", "derivative"}:
            continue
        # What the event says about an object the bag holds must match the manifests.
        mentioned.add(ev.object_id)
        path = by_sha.get(ev.object_id)
        if path is None:
            continue
        try:
            details = parse_json(ev.details)
        except (ValueError, TypeError):
            details = {}
        if not isinstance(details, dict):
            details = {}
        sm3 = details.get("sm3")
        listed = inp.sm3_by_path.get(path)
        name = _event_name(ev)
        if sm3 and listed is not None and listed != str(sm3).lower():
            add(
                Finding(
                    "custody-digest-mismatch",
                    CUSTODY_FILE,
                    f"{name}: says SM3 {sm3}, manifest-sm3.txt has {listed} for {path}",
                    ERROR,
                    number,
                )
            )
        size = details.get("size")
        if isinstance(size, int) and path in inp.sizes and inp.sizes[path] != size:
            add(
                Finding(
                    "custody-digest-mismatch",
                    CUSTODY_FILE,
                    f"{name}: says {size} bytes, {path} has {inp.sizes[path]}",
                    ERROR,
                    number,
                )
            )
    if inp.liuhen:
        for path, sha in sorted(inp.originals.items()):
            if sha not in mentioned:
                add(
                    Finding(
                        "custody",
                        path,
                        "no custody event in the excerpt names this original",
                        WARNING,
                    )
                )
    summary = {
        "events": len(result.events),
        "stations": result.stations,
        "links_checked": result.links,
        "keys": len(result.keys),
        "chain_heads": result.heads,
        "ok": not any(f.severity == ERROR for f in findings),
    }
    return findings, summary


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
