"""Write one BagIt 1.0 bag, streamed: to a directory or to a single ``.tar`` file.

Every payload file is hashed with SHA-256, SHA-512 and SM3 in the same pass that writes
it, and checked against the digests the caller expects (the catalog's) before the bag
can be finished; nothing is read twice and no second copy is made. The bag is written
under a temporary name beside its final one (``<name>.partial``) and only renamed into
place by :meth:`BagWriter.commit`; :meth:`BagWriter.abort` removes it. Finishing a bag
syncs every file and folder of it and its entry in the parent folder, so a bag the
caller records as done survives a power cut.

The tar stream is written here rather than through ``tarfile.addfile`` so that payload
bytes move in large chunks through the hashers; headers come from the public
``TarInfo.tobuf`` (POSIX pax, so UTF-8 names of any length survive).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from archive_export.paths import encode_manifest_path
from catalog.signing import Signer
from config.errors import EXIT_DATAERR, EXIT_IOERR, LiuhenError
from storage import fsync_dir
from storage.digest import Hasher, new_hasher

ALGORITHMS = ("sha256", "sha512", "sm3")
CHUNK = 4 << 20
BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
SIGNATURE_NAME = "tagmanifest-sha256.txt.sig"
KEY_NAME = "signing-key.pem"
PARTIAL_SUFFIX = ".partial"


class BagWriteError(LiuhenError):
    exit_code = EXIT_IOERR


class PayloadMismatch(LiuhenError):
    """Bytes read from the store are not the bytes the catalog recorded."""

    exit_code = EXIT_DATAERR

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        super().__init__(
            f"{what}: " + "; ".join(problems),
            hint="the stored object does not match the catalog: the export was aborted and "
            "its partial output removed; run 'liuhen verify --store' and restore the object "
            "from a replica or backup",
        )
        self.what = what
        self.problems = list(problems)


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the bag root, '/' separators
    size: int
    digests: dict[str, str]  # algorithm -> hex
    offset: int | None = None  # tar output: where the member's bytes start


class _Hashers:
    """SHA-256, SHA-512 and SM3 over the same chunks; SM3 and SHA-512 run on threads
    (hashlib releases the GIL), so the three cost about as much as the slowest."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool
        self.h: dict[str, Hasher] = {alg: new_hasher(alg) for alg in ALGORITHMS}

    def update(self, chunk: bytes) -> None:
        if len(chunk) < 65536:
            for h in self.h.values():
                h.update(chunk)
            return
        futures = [self.pool.submit(self.h[alg].update, chunk) for alg in ("sm3", "sha512")]
        self.h["sha256"].update(chunk)
        for f in futures:
            f.result()

    def hexdigests(self) -> dict[str, str]:
        return {alg: h.hexdigest() for alg, h in self.h.items()}


@dataclass
class BagWriter:
    """One bag. ``final`` is the bag directory, or the ``.tar`` file holding it."""

    final: Path
    tar: bool = False
    entries: list[FileEntry] = field(default_factory=list)
    tag_entries: list[FileEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.final.name.removesuffix(".tar") if self.tar else self.final.name
        self.temp = self.final.with_name(self.final.name + PARTIAL_SUFFIX)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bag-hash")
        self._tar_out: BinaryIO | None = None
        self._tar_offset = 0
        self._dirs_made: set[str] = set()
        self._closed = False
        try:
            if self.tar:
                self._tar_out = open(self.temp, "xb")  # noqa: SIM115 - closed in finish/abort
            else:
                self.temp.mkdir()
        except FileExistsError as exc:
            raise BagWriteError(
                f"{self.temp} exists: an earlier export was interrupted there",
                hint=f"remove {self.temp} (it is incomplete) and export again",
            ) from exc
        except OSError as exc:
            raise BagWriteError(f"cannot create {self.temp}: {exc.strerror}") from exc

    # -- payload ---------------------------------------------------------------------------

    def add_stream(
        self,
        path: str,
        stream: BinaryIO,
        size: int,
        *,
        expect: dict[str, str] | None = None,
        what: str = "",
    ) -> FileEntry:
        """Copy ``size`` bytes of ``stream`` to ``path``, hashing them on the way.

        ``expect`` maps algorithms to the hex digests the bytes must have; a difference,
        or a stream shorter or longer than ``size``, raises :class:`PayloadMismatch`
        naming ``what`` (the bag is then unusable: the caller aborts it).
        """
        hashers = _Hashers(self._pool)
        written = 0
        offset = None
        try:
            with self._open_member(path, size) as (out, offset):
                while written < size:
                    chunk = stream.read(min(CHUNK, size - written))
                    if not chunk:
                        break
                    hashers.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
                extra = stream.read(1)
                if written < size:
                    # Keep the tar well-formed up to the abort; the bag is discarded anyway.
                    out.write(b"\0" * (size - written))
        except OSError as exc:
            raise BagWriteError(f"{self.temp}: cannot write {path}: {exc}") from exc
        digests = hashers.hexdigests()
        problems: list[str] = []
        if written != size or extra:
            problems.append(
                f"size differs: the catalog records {size} bytes, the store gave "
                f"{written if not extra else f'more than {size}'}"
            )
        for alg, want in (expect or {}).items():
            if digests[alg] != want:
                problems.append(f"{alg} mismatch: expected {want}, got {digests[alg]}")
        if problems:
            raise PayloadMismatch(what or path, problems)
        entry = FileEntry(path, size, digests, offset)
        self.entries.append(entry)
        return entry

    def add_bytes(self, path: str, data: bytes) -> FileEntry:
        return self.add_stream(path, io.BytesIO(data), len(data))

    def _open_member(self, path: str, size: int) -> _Member:
        return _Member(self, path, size)

    # -- tag files, signature --------------------------------------------------------------

    def finish(self, bag_info: Sequence[tuple[str, str]], signer: Signer, verify_text: str) -> None:
        """Write the manifests, tag files, tag manifests and the detached signature."""
        payload = sorted(self.entries, key=lambda e: e.path)
        tags: list[tuple[str, bytes]] = [("bagit.txt", BAGIT_TXT)]
        tags.append(("bag-info.txt", _bag_info_bytes(bag_info)))
        for alg in ALGORITHMS:
            tags.append((f"manifest-{alg}.txt", manifest_bytes(payload, alg)))
        tags.append(("VERIFY.txt", verify_text.encode("utf-8")))
        tags.append((KEY_NAME, _public_pem(signer.public_key)))
        entries = [self._write_tag(name, data) for name, data in tags]
        tag_manifests = {alg: manifest_bytes(entries, alg) for alg in ALGORITHMS}
        for alg in ALGORITHMS:
            self._write_tag(f"tagmanifest-{alg}.txt", tag_manifests[alg])
        self._write_tag(SIGNATURE_NAME, signer.sign(tag_manifests["sha256"]))
        self._close_output()

    def _write_tag(self, name: str, data: bytes) -> FileEntry:
        hashers = _Hashers(self._pool)
        hashers.update(data)
        with self._open_member(name, len(data)) as (out, offset):
            out.write(data)
        entry = FileEntry(name, len(data), hashers.hexdigests(), offset)
        self.tag_entries.append(entry)
        return entry

    def _close_output(self) -> None:
        if self._tar_out is not None:
            # End of archive: two zero blocks, then pad to a whole tar record.
            end = self._tar_offset + 2 * tarfile.BLOCKSIZE
            end += -end % tarfile.RECORDSIZE
            self._tar_out.write(b"\0" * (end - self._tar_offset))
            self._tar_offset = end
            self._tar_out.flush()
            os.fsync(self._tar_out.fileno())
            self._tar_out.close()
            self._tar_out = None
        else:
            self._sync_folders()
        # The ``.partial`` entry itself: the export is recorded DONE once finish() has
        # returned, and a bag a power cut can take away must not be recorded.
        fsync_dir(self.temp.parent)
        self._pool.shutdown()
        self._closed = True

    def _sync_folders(self) -> None:
        """Make every folder of the bag directory durable. Each file was synced as it was
        written, but a file's name lives in its folder: without this, a power cut can
        lose whole files (or folders) of a bag the catalog already records as exported."""
        for folder, _dirs, _files in os.walk(self.temp, topdown=False):
            fsync_dir(Path(folder))

    def flush(self) -> None:
        """Make what was written so far readable by other processes (ffmpeg, a reader)."""
        if self._tar_out is not None:
            self._tar_out.flush()

    # -- commit / abort --------------------------------------------------------------------

    def commit(self) -> None:
        """Rename the finished bag into place (atomic on one file system)."""
        if not self._closed:
            raise BagWriteError(f"{self.temp}: commit before finish")
        if self.final.exists():
            raise BagWriteError(
                f"{self.final} appeared while exporting; it was left as it "
                "is and this export was not put in its place",
                hint="choose another --out and export again",
            )
        os.rename(self.temp, self.final)
        fsync_dir(self.final.parent)

    def abort(self) -> None:
        """Remove the temporary output; never the final path (it was not ours yet)."""
        if self._tar_out is not None:
            self._tar_out.close()
            self._tar_out = None
        self._pool.shutdown(wait=True)
        self._closed = True
        if self.temp.is_dir():
            shutil.rmtree(self.temp, ignore_errors=True)
        else:
            self.temp.unlink(missing_ok=True)

    def remove_final(self) -> None:
        """Undo a commit (the catalog could not record the export)."""
        if self.final.is_dir():
            shutil.rmtree(self.final, ignore_errors=True)
        else:
            self.final.unlink(missing_ok=True)

    @property
    def member_prefix(self) -> str:
        return f"{self.name}/" if self.tar else ""


class _Member:
    """Context of one file being written: a file in the directory, or a tar member."""

    def __init__(self, bag: BagWriter, path: str, size: int) -> None:
        self.bag, self.path, self.size = bag, path, size
        self._file: BinaryIO | None = None

    def __enter__(self) -> tuple[BinaryIO, int | None]:
        bag = self.bag
        if bag._tar_out is not None:
            info = tarfile.TarInfo(f"{bag.name}/{self.path}")
            info.size = self.size
            info.mode = 0o444
            info.mtime = int(time.time())
            info.type = tarfile.REGTYPE
            info.uname = info.gname = ""
            for folder in _parents(self.path):
                if folder not in bag._dirs_made:
                    bag._dirs_made.add(folder)
                    d = tarfile.TarInfo(f"{bag.name}/{folder}" if folder else bag.name)
                    d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, info.mtime
                    self._write_header(d)
            self._write_header(info)
            return bag._tar_out, bag._tar_offset
        target = bag.temp / self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(target, "xb")
        return self._file, None

    def _write_header(self, info: tarfile.TarInfo) -> None:
        bag = self.bag
        assert bag._tar_out is not None
        buf = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        bag._tar_out.write(buf)
        bag._tar_offset += len(buf)

    def __exit__(self, *exc: object) -> None:
        bag = self.bag
        if self._file is not None:
            try:
                if exc[0] is None:
                    self._file.flush()
                    os.fsync(self._file.fileno())
            finally:
                self._file.close()
            return
        if exc[0] is None and bag._tar_out is not None:
            pad = -self.size % tarfile.BLOCKSIZE
            bag._tar_out.write(b"\0" * pad)
            bag._tar_offset += self.size + pad


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return [""] + ["/".join(parts[: i + 1]) for i in range(len(parts))]


def manifest_bytes(entries: Sequence[FileEntry], alg: str) -> bytes:
    # Two spaces: the separator both BagIt readers and `sha256sum -c` accept.
    lines = [f"{e.digests[alg]}  {encode_manifest_path(e.path)}\n" for e in entries]
    return "".join(lines).encode("utf-8")


def _bag_info_bytes(items: Sequence[tuple[str, str]]) -> bytes:
    lines = []
    for label, value in items:
        value = " ".join(str(value).split())  # one line per value: no CR/LF in a label
        lines.append(f"{label}: {value}\n")
    return "".join(lines).encode("utf-8")


def _public_pem(raw: bytes) -> bytes:
    return Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
