"""The bag reader: what a BagIt bag is made of, whether a directory or a ``.tar`` holding
one, read without unpacking. ``liuhen verify`` (:mod:`archive_export.bagverify`), the
four-properties check (:mod:`archive_export.fourprops`) and the export's check of the bag
it is writing all read bags through it.

A directory is walked without following links; an uncompressed tar's members are read at
their offsets (media tools read them in place through ffmpeg's ``subfile`` protocol, a
byte range of the tar file); a compressed tar is streamed once, members hashed as they
come (for the verifier only: the other readers need random access). Members that would
escape (absolute names, ``..``, links) are reported, never extracted. Nothing is written,
and nothing is memory-mapped (a mapped file truncated by someone else kills the process
with SIGBUS; a read just comes back short).

Bounded like ``liuhen verify`` (:mod:`archive_export.bagparse`): at most ``MAX_FILES``
files and :data:`MAX_MEMBERS` tar members, a tag file read whole at most
``MAX_TAG_BYTES``. The verifier reports a bag beyond a bound as "too large" / "too many";
a bag opened with :func:`open_bag` (a bundle someone handed over, so possibly hostile)
raises :class:`BagTooLarge` (exit 1, naming the file). The export's own view of the bag
it is writing is not bounded.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, cast

from archive_export import bagparse as P
from archive_export.bagparse import MAX_FILES, MAX_TAG_BYTES, Finding, FindingList
from archive_export.msg import Msg
from archive_export.parallel_hash import FileSource, SliceSource, hash_names, make_hasher
from config.errors import EXIT_FAILED_CHECK, EXIT_NOINPUT, EXIT_USAGE, LiuhenError
from config.i18n import N_, _

CUSTODY_FILE = "data/metadata/custody.jsonl"
KEYS_FILE = "data/metadata/keys.json"
# Non-payload members of a compressed tar are held in memory until the stream ends (their
# manifests may come later); this is all of them together.
MAX_HELD_BYTES = 2 * MAX_TAG_BYTES
# Tar members of any kind (directories too) read before giving up.
MAX_MEMBERS = 2 * MAX_FILES
# Algorithms a compressed tar's payload is hashed with before any manifest was seen.
STREAM_DEFAULT = ("md5", "sha1", "sha256", "sha512", "sm3")
# What the reader reports about a bag's entries themselves (not their contents): links,
# devices, names that escape, a tar member given twice or outside the bag's folder.
ENTRY_KINDS = frozenset(
    {"link", "special-file", "unsafe-path", "duplicate-member", "unexpected-file", "unreadable"}
)


class BagUnusable(LiuhenError):
    """Not something that can be verified as a bag at all (exit 2)."""

    exit_code = EXIT_USAGE


class BundleNotFound(LiuhenError):
    exit_code = EXIT_NOINPUT


class BagTooLarge(LiuhenError):
    """The bag is over a bound: invalid as "too large / too many" (a failed check)."""

    exit_code = EXIT_FAILED_CHECK


_HINT = N_("give a bag directory or the .tar an export wrote")
_SPLIT_HINT = "a bag checked here holds at most {n:,} files; split the handover into several bags"


# -- what a bag is made of, from a directory or a tar -------------------------------------------


class TagTooLarge(OSError):
    """A tag file too big to hold in memory: reported as ``too-large``, not parsed."""


@dataclass
class BagTree:
    """A bag's entries as listed once: its regular files with their sizes, its folders,
    and what the listing found wrong with the entries themselves (``findings``)."""

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
    bounded: bool = True  # False: the export's own bag, listed whatever its size
    top: str = ""  # the folder holding the bag inside a tar ("bag/"; "" at the top)

    def read(self, rel: str, limit: int | None = MAX_TAG_BYTES) -> bytes:
        """A file's bytes, whole; ``limit``: TagTooLarge above that many (None: none)."""
        if rel in self.blobs:
            return self.blobs[rel]
        size = self.files[rel]
        if (limit is not None and size > limit) or self.streamed is not None:
            # (Streamed: a member not kept in blobs was too big to keep.)
            raise TagTooLarge(
                f"{size:,} bytes, more than the {limit or MAX_TAG_BYTES:,} a tag file "
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

    def open(self, rel: str) -> BinaryIO:
        """A file of the bag, seekable (a tar member: a window onto the tar)."""
        if self.tar is not None:
            return _Range(open(self.tar, "rb"), self.offsets[rel], self.files[rel])
        assert self.root is not None
        return open(self.root / rel, "rb")

    def media_url(self, rel: str) -> str:
        """What to give ffmpeg/ffprobe as input for a file of the bag."""
        if self.tar is not None:
            offset, size = self.offsets[rel], self.files[rel]
            # ffmpeg's subfile protocol: bytes [start, end) of the tar, seekable.
            return f"subfile,,start,{offset},end,{offset + size},,:{os.path.abspath(self.tar)}"
        assert self.root is not None
        # Absolute: cannot be mistaken for an option or an ffmpeg protocol.
        return os.path.abspath(self.root / rel)

    def count_file(self, where: str) -> bool:
        """False (and a ``too-many`` finding, once) when the bag already has MAX_FILES."""
        if not self.bounded or len(self.files) < MAX_FILES:
            return True
        self.stop(
            Msg(
                N_("the bag holds more than {limit:,} files (stopped listing at {where})"),
                limit=MAX_FILES,
                where=where,
            )
        )
        return False

    def stop(self, detail: str) -> None:
        if not self.too_many:
            self.too_many = True
            self.findings.append(
                Finding(
                    "too-many",
                    "",
                    Msg(
                        N_(
                            "{detail}; this verifier checks bags of at most that many: split the "
                            "handover into several bags"
                        ),
                        detail=detail,
                    ),
                )
            )


def walk_directory(root: Path, *, bounded: bool = True) -> BagTree:
    """A bag directory's entries, links and special files reported, never followed."""
    tree = BagTree(root=root, bounded=bounded)
    stack = [""]
    while stack and not tree.too_many:
        rel_dir = stack.pop()
        try:
            it = os.scandir(root / rel_dir if rel_dir else root)
        except OSError as exc:
            tree.findings.append(
                Finding(
                    "unreadable",
                    rel_dir or ".",
                    Msg(N_("cannot list directory: {strerror}"), strerror=exc.strerror),
                )
            )
            continue
        with it:
            for e in it:
                if not _walk_entry(tree, e, f"{rel_dir}/{e.name}" if rel_dir else e.name, stack):
                    break
    return tree


def _walk_entry(tree: BagTree, e: os.DirEntry[str], rel: str, stack: list[str]) -> bool:
    """Record one directory entry; False once the bag is over its bounds."""
    try:
        st = e.stat(follow_symlinks=False)
    except OSError as exc:
        tree.findings.append(
            Finding("unreadable", rel, Msg(N_("cannot stat: {strerror}"), strerror=exc.strerror))
        )
        return True
    if stat.S_ISLNK(st.st_mode):
        # Never followed: a link could point outside the bag.
        tree.findings.append(
            Finding(
                "link",
                rel,
                Msg(N_("is a symbolic link (not followed; a bag holds regular files only)")),
            )
        )
    elif stat.S_ISDIR(st.st_mode):
        if tree.bounded and len(tree.dirs) >= MAX_MEMBERS:
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
            Finding("special-file", rel, Msg(N_("is not a regular file (device, fifo or socket)")))
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


def _add_member(tree: BagTree, m: _Member, rel: str) -> bool:
    """Record a member; True when it is a regular file whose bytes belong to the bag."""
    if m.type == "link":
        tree.findings.append(
            Finding(
                "link",
                rel,
                Msg(
                    N_("tar member is a link to {linkname!r} (never followed)"), linkname=m.linkname
                ),
            )
        )
    elif m.type == "dir":
        tree.dirs.add(rel)
    elif m.type == "file":
        if rel in tree.files:
            tree.findings.append(
                Finding(
                    "duplicate-member",
                    rel,
                    Msg(
                        N_(
                            "appears more than once in the tar (a later copy would silently "
                            "replace the first on extraction)"
                        )
                    ),
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
        tree.findings.append(
            Finding("special-file", rel, Msg(N_("tar member is not a regular file")))
        )
    return False


def _tar_members(tf: tarfile.TarFile, tree: BagTree) -> Iterator[tarfile.TarInfo]:
    """Members one at a time, at most MAX_MEMBERS; tarfile's own list of every member it
    has read (TarFile.members) is emptied as we go, so memory does not grow with them."""
    count = 0
    while True:
        try:
            m = tf.next()
        except P.TarHeaderTooLarge as exc:  # not read: the verdict is "too large"
            tree.findings.append(Finding("too-large", "", Msg(N_("{exc}; not read"), exc=exc)))
            tree.too_many = True  # not checked further: the rest of the tar is unknown
            return
        if m is None:
            return
        cast(Any, tf).members.clear()  # (TarFile.members is not in the type stubs)
        count += 1
        if (tree.bounded and count > MAX_MEMBERS) or tree.too_many:
            tree.stop(
                f"the tar holds more than {MAX_MEMBERS:,} members (stopped reading it at {m.name})"
            )
            return
        yield m


def open_tar(path: Path, *, stream: bool = True, bounded: bool = True) -> BagTree:
    """An uncompressed tar's members, to be read at their offsets. One that cannot be read
    so (compressed) is streamed when ``stream`` (the verifier), else BundleNotFound."""
    tree = BagTree(tar=path, bounded=bounded)
    members: list[_Member] = []
    try:
        with (
            open(path, "rb") as fh,
            tarfile.open(fileobj=fh, mode="r:", tarinfo=P.BoundedTarInfo) as tf,
        ):
            length = os.fstat(fh.fileno()).st_size
            # Headers only: next() seeks over member data, cheap for an uncompressed file.
            members = [_Member.of(m) for m in _tar_members(tf, tree)]
    except (tarfile.TarError, EOFError, OSError) as exc:
        if stream:
            return _stream_tar(path)
        raise BundleNotFound(
            _("{path}: not a readable tar file ({error})").format(path=path, error=exc),
            hint=_(_HINT),
        ) from exc
    if tree.too_many:
        return tree  # not checked further: a root guessed from part of it would mislead
    names = [_norm_member(m.name) for m in members if not _member_problem(m.name)]
    tree.top = _tar_root(names) if stream else _view_root(names)
    _place_members(tree, members, length)
    return tree


def _view_root(names: list[str]) -> str:
    """The bag's folder for a view: where bagit.txt is or, in a tar being written (no
    bagit.txt yet), its first top-level folder."""
    try:
        return _tar_root(names)
    except BagUnusable:
        tops = sorted({n.split("/", 1)[0] for n in names if n})
        return tops[0] + "/" if tops else ""


def _place_members(tree: BagTree, members: list[_Member], length: int) -> None:
    """The members of the bag's folder as its files, at their offsets; what lies outside
    it, escapes or is cut off by the end of the tar is a finding."""
    root = tree.top
    regular: list[tuple[str, _Member]] = []
    for m in members:
        name = _norm_member(m.name)
        why = _member_problem(m.name)
        if why:
            tree.findings.append(
                Finding("unsafe-path", m.name, Msg(N_("{why} (never extracted)"), why=why))
            )
            continue
        if not name or name + "/" == root:
            continue
        if root and not name.startswith(root):
            tree.findings.append(
                Finding(
                    "unexpected-file",
                    name,
                    Msg(N_("tar member outside the bag folder {root!r}"), root=root),
                )
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
                    Msg(
                        N_("truncated: the tar ends {count} bytes into it"),
                        count=m.offset + m.size - length,
                    ),
                )
            )
            del tree.files[rel]
            continue
        tree.offsets[rel] = m.offset


def _stream_tar(path: Path) -> BagTree:
    """A compressed (or otherwise unseekable) tar: one pass, hashing members as they come."""
    tree = BagTree(streamed={})
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
                    tree.findings.append(
                        Finding("unsafe-path", m.name, Msg(N_("{why} (never extracted)"), why=why))
                    )
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
                            "unexpected-file",
                            name,
                            Msg(N_("tar member outside the bag folder {root!r}"), root=root),
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
        tree.findings.append(
            Finding("unreadable", str(path), Msg(N_("the tar is damaged: {exc}"), exc=exc))
        )
    if (root is None or "bagit.txt" not in tree.files) and not tree.too_many:
        raise BagUnusable(f"{path}: the tar holds no bagit.txt")
    for rel, data in tree.blobs.items():
        tree.streamed[rel] = {a: _digest(a, data) for a in algorithms | set(STREAM_DEFAULT)}
    return tree


def _take_member(tree: BagTree, rel: str, f: IO[bytes], size: int, algorithms: set[str]) -> None:
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
        tree.findings.append(Finding("too-large", rel, Msg(N_("{why}; not read"), why=why)))
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


def load_tree(path: Path) -> tuple[BagTree, str]:
    """The bag at ``path`` for the verifier, with its container: directory, tar (read in
    place) or tar-stream (compressed, read once)."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise BagUnusable(_("{path}: no such file or directory").format(path=path)) from exc
    except OSError as exc:
        raise BagUnusable(
            _("{path}: cannot read: {error}").format(path=path, error=exc.strerror)
        ) from exc
    if stat.S_ISDIR(st.st_mode):
        tree = walk_directory(path)
        if "bagit.txt" not in tree.files and not tree.too_many:
            raise BagUnusable(
                _("{path}: no bagit.txt: not a BagIt bag").format(path=path),
                hint=_(
                    "give the bag's top folder (the one holding bagit.txt and data/), or its .tar"
                ),
            )
        return tree, "directory"
    if not tarfile.is_tarfile(path):
        raise BagUnusable(
            _("{path}: neither a bag directory nor a tar").format(path=path),
            hint=_("give a bag folder or a .tar made by 'liuhen export'"),
        )
    tree = open_tar(path)
    return tree, "tar-stream" if tree.streamed is not None else "tar"


# -- views: a bag's files for the four-properties check and the export ------------------------


class BagView(Protocol):
    name: str
    location: Path

    def tree(self) -> BagTree:
        """The bag's entries as listed (:class:`BagTree`), listing them on first use."""
        ...

    def files(self) -> dict[str, int]:
        """Every regular file: path relative to the bag root -> size."""
        ...

    def open(self, path: str) -> BinaryIO: ...

    def read(self, path: str) -> bytes: ...

    def check_size(self, path: str) -> None:
        """Raise when ``path`` is too big to read whole (a bounded view)."""
        ...

    def media_url(self, path: str) -> str:
        """What to give ffmpeg/ffprobe as input for ``path``."""
        ...

    def odd_entries(self) -> list[str]:
        """Links, devices and paths escaping the bag: never part of a sound bag."""
        ...


class _TreeView(ABC):
    """A :class:`BagTree` with the calls a check makes; bounded: over a bound raises
    :class:`BagTooLarge` instead of reporting it (see the module doc)."""

    def __init__(self, location: Path, name: str, *, bounded: bool) -> None:
        self.location = location
        self.name = name
        self._bounded = bounded
        self._tree: BagTree | None = None

    @abstractmethod
    def _list(self) -> BagTree:
        """List the bag's entries (a directory walk, a tar's headers)."""

    def tree(self) -> BagTree:
        if self._tree is None:
            tree = self._list()
            if tree.too_many:
                # The reader's finding (the first bound reached), as the command's error.
                bound = next(f for f in tree.findings if f.kind in ("too-many", "too-large"))
                what = "too many" if bound.kind == "too-many" else "too large"
                raise BagTooLarge(
                    f"{self.location}: invalid: {bound.detail} ({what})",
                    hint=_SPLIT_HINT.format(n=MAX_FILES) if what == "too many" else _HINT,
                )
            self._tree = tree
        return self._tree

    def files(self) -> dict[str, int]:
        return dict(self.tree().files)

    def odd_entries(self) -> list[str]:
        return [
            f"{f.path} ({f.detail})" if f.kind != "link" else f.path
            for f in self.tree().findings
            if f.kind in ENTRY_KINDS
        ]

    def open(self, path: str) -> BinaryIO:
        return self.tree().open(path)

    def read(self, path: str) -> bytes:
        self.check_size(path)
        return self.tree().read(path, None)

    def check_size(self, path: str) -> None:
        """BagTooLarge when the view is bounded and ``path`` is too big to read whole."""
        size = self.tree().files[path]
        if self._bounded and size > MAX_TAG_BYTES:
            raise BagTooLarge(
                f"{self.location}: invalid: {path} is {size:,} bytes, more than the "
                f"{MAX_TAG_BYTES:,} a file read whole may have here (too large)",
                hint="a tag or metadata file that big is not one a bag needs",
            )

    def media_url(self, path: str) -> str:
        return self.tree().media_url(path)


class DirBag(_TreeView):
    def __init__(self, root: Path, name: str | None = None, *, bounded: bool = False) -> None:
        super().__init__(root, name or root.name, bounded=bounded)

    def _list(self) -> BagTree:
        return walk_directory(self.location, bounded=self._bounded)


class TarBag(_TreeView):
    """A bag inside an uncompressed tar file, in one top-level folder (the bag's name)."""

    def __init__(self, path: Path, *, bounded: bool = False) -> None:
        super().__init__(path, path.stem, bounded=bounded)
        self.name = self.tree().top.rstrip("/") or path.stem

    def _list(self) -> BagTree:
        return open_tar(self.location, stream=False, bounded=self._bounded)


class _Range(io.RawIOBase, BinaryIO):
    """A read-only, seekable window onto a file."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        self._f, self._off, self._size, self._pos = f, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._off + self._pos)
        data = self._f.read(n)
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def open_checked(path: Path) -> BagView:
    """:func:`open_bag` of something that is a bag: a folder holding ``bagit.txt``, or a
    tar holding one; anything else is :class:`BagUnusable` (exit 2, as ``liuhen verify``
    says of it), before any check runs."""
    if path.is_file() and not tarfile.is_tarfile(path):
        raise BagUnusable(
            _("{path}: not a bag: neither a bag folder nor a tar").format(path=path),
            hint=_("give a bag folder or a .tar made by 'liuhen export'"),
        )
    bag = open_bag(path)
    if "bagit.txt" not in bag.files():
        raise BagUnusable(
            _("{path}: not a bag: it holds no bagit.txt").format(path=path),
            hint=_("give the bag's top folder (the one holding bagit.txt and data/), or its .tar"),
        )
    return bag


def open_bag(path: Path) -> BagView:
    """A bundle handed over (bounded: see the module doc)."""
    if path.is_dir():
        return DirBag(path, bounded=True)
    if path.is_file():
        return TarBag(path, bounded=True)
    raise BundleNotFound(_("{path}: no such bundle").format(path=path), hint=_(_HINT))
