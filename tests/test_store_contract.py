"""The ObjectStore contract, one suite run against every store (LocalStore, S3Store).

A new store is done when this suite passes against it. Each test looks at what a user of
the store would notice: the bytes read back, what ``list()`` shows, what is left behind
after a refused put, which error comes out.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from storage.base import ObjectStore
from storage.digest import Digest, digest_bytes
from storage.errors import (
    DamagedObject,
    DigestMismatch,
    InvalidKeyError,
    ObjectNotFound,
    RetentionRefused,
    StorageError,
)
from storage.keys import content_key
from storage.local import TEMP_PREFIX, LocalStore
from storage.s3 import S3Store

MIB = 1 << 20
REPO_ROOT = Path(__file__).resolve().parents[1]


# -- the stores under test ---------------------------------------------------------------


@dataclass
class Backend:
    """A store plus a back door to its storage, for what the store itself must not do."""

    kind: str
    store: ObjectStore
    # Change an object's bytes behind the store's back (bit rot, a tampering admin).
    corrupt: Callable[[str], None]
    # What a refused or interrupted put could leave behind: temp files, open uploads.
    leftovers: Callable[[], list[str]]
    # Put things next to the objects that are not objects, to check list() hides them.
    plant_non_objects: Callable[[], None]
    # How many parts the stored object was uploaded in (None: not a multipart store).
    parts_of: Callable[[str], int | None]
    # Run at teardown (planted uploads are aborted so they do not outlive the test).
    cleanups: list[Callable[[], None]] = field(default_factory=list)


def _local_backend(root: Path) -> Backend:
    store = LocalStore(root)

    def corrupt(key: str) -> None:
        path = root / key
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    def leftovers() -> list[str]:
        return sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)
        )

    def plant() -> None:
        (root / "a").mkdir(parents=True, exist_ok=True)
        (root / "a" / f"{TEMP_PREFIX}3.deadbeef").write_bytes(b"half an object")
        (root / ".holds").mkdir(exist_ok=True)
        (root / ".holds" / "x.hold").touch()

    return Backend("local", store, corrupt, leftovers, plant, lambda key: None)


def _s3_backend(kind: str, store: S3Store, client: Any) -> Backend:
    bucket, base = store.bucket, f"{store.prefix}/"

    def corrupt(key: str) -> None:
        obj = client.get_object(Bucket=bucket, Key=base + key)
        data = bytearray(obj["Body"].read())
        data[len(data) // 2] ^= 0x01
        # Same metadata, so the object still claims its old SHA-256, as bit rot would.
        client.put_object(
            Bucket=bucket,
            Key=base + key,
            Body=bytes(data),
            Metadata=obj["Metadata"],
            ChecksumAlgorithm="SHA256",
        )

    def leftovers() -> list[str]:
        resp = client.list_multipart_uploads(Bucket=bucket, Prefix=base)
        return sorted(f"upload {u['Key']}" for u in resp.get("Uploads") or ())

    def plant() -> None:
        # An object beside the store's prefix, and an unfinished upload inside it.
        client.put_object(Bucket=bucket, Key=f"other-{store.prefix}/a/1", Body=b"not ours")
        up = client.create_multipart_upload(Bucket=bucket, Key=base + "a/3")
        made.cleanups.append(
            lambda: client.abort_multipart_upload(
                Bucket=bucket, Key=base + "a/3", UploadId=up["UploadId"]
            )
        )

    def parts_of(key: str) -> int | None:
        etag = str(client.head_object(Bucket=bucket, Key=base + key)["ETag"]).strip('"')
        return int(etag.split("-")[1]) if "-" in etag else 1

    made = Backend(kind, store, corrupt, leftovers, plant, parts_of)
    return made


@pytest.fixture(params=["local", "s3", "s3-lock"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """LocalStore; S3Store on a plain bucket; S3Store on an Object Lock bucket, where
    deletes go by version and puts may carry retention."""
    if request.param == "local":
        yield _local_backend(tmp_path / "objects")
        return
    lock = request.param == "s3-lock"
    bucket = request.getfixturevalue("s3_lock_bucket" if lock else "s3_bucket")
    client = request.getfixturevalue("s3_client")
    make = request.getfixturevalue("make_s3_store")
    # A prefix of two segments: keys must round-trip relative to it.
    store = make(bucket, f"p{uuid.uuid4().hex[:8]}/objects")
    be = _s3_backend(request.param, store, client)
    yield be
    for cleanup in be.cleanups:
        with contextlib.suppress(Exception):
            cleanup()


@pytest.fixture
def store(backend: Backend) -> ObjectStore:
    return backend.store


# -- helpers -----------------------------------------------------------------------------


def payload(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def put_bytes(store: ObjectStore, key: str, data: bytes, **kw: Any) -> Any:
    kw.setdefault("expected", digest_bytes(data))
    return store.put(key, io.BytesIO(data), **kw)


def read_all(store: ObjectStore, key: str) -> bytes:
    with store.open(key) as f:
        return f.read()


class ChunkStream(io.RawIOBase):
    """A non-seekable stream that makes its bytes as it is read (a pipe, a camera)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def repeated(block: bytes, times: int) -> Iterator[bytes]:
    for _ in range(times):
        yield block


# Object sizes: one under the multipart threshold, one of three 5 MiB parts on S3.
SMALL = 100_000
LARGE = 12 * MIB


# -- writing and reading -----------------------------------------------------------------


def test_put_then_read_back_the_exact_bytes(store: ObjectStore) -> None:
    data = payload(SMALL) + b"\x00\r\n\xff"
    digest = digest_bytes(data)
    key = content_key(digest)

    info = put_bytes(store, key, data, size=len(data))

    assert info.key == key
    assert info.size == len(data)
    assert info.sha256 == digest
    assert store.head(key) == info
    assert read_all(store, key) == data
    assert store.exists(key)
    assert store.verify(key, digest).size == len(data)


def test_empty_object_round_trips(store: ObjectStore) -> None:
    info = put_bytes(store, "empty", b"", size=0)
    assert info.size == 0
    assert read_all(store, "empty") == b""


def test_list_shows_only_real_objects_filtered_by_prefix(backend: Backend) -> None:
    store = backend.store
    for key in ("a/1", "a/2", "b/1", "ab"):
        put_bytes(store, key, key.encode())
    backend.plant_non_objects()

    assert sorted(store.list()) == ["a/1", "a/2", "ab", "b/1"]
    assert sorted(store.list("a/")) == ["a/1", "a/2"]
    assert sorted(store.list("b")) == ["b/1"]
    assert list(store.list("c")) == []
    assert not store.exists("a/3")


def test_put_of_an_existing_key_with_the_same_bytes_changes_nothing(store: ObjectStore) -> None:
    data = payload(SMALL)
    digest = digest_bytes(data)
    key = content_key(digest)
    first = put_bytes(store, key, data)

    # The second copy arrives through a stream that cannot be rewound, as from a camera.
    again = store.put(
        key, cast(BinaryIO, ChunkStream(repeated(data, 1))), expected=digest, size=len(data)
    )

    assert again.size == first.size
    assert again.sha256 == first.sha256
    assert list(store.list()) == [key]
    assert read_all(store, key) == data


def test_a_duplicate_with_wrong_bytes_is_still_refused(store: ObjectStore) -> None:
    data = payload(SMALL)
    put_bytes(store, "k", data)

    with pytest.raises(DigestMismatch):
        put_bytes(store, "k", payload(SMALL, seed=2), expected=digest_bytes(data))
    assert read_all(store, "k") == data


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "multipart"])
def test_wrong_digest_is_refused_and_leaves_nothing(backend: Backend, size: int) -> None:
    store = backend.store
    data = payload(size)
    wrong = digest_bytes(b"something else")

    with pytest.raises(DigestMismatch) as err:
        put_bytes(store, "evidence/clip", data, expected=wrong)

    assert err.value.expected == wrong
    assert err.value.actual == digest_bytes(data)
    assert "evidence/clip" in str(err.value)
    assert not store.exists("evidence/clip")
    assert list(store.list()) == []
    assert backend.leftovers() == []


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "multipart"])
def test_size_mismatch_is_refused_and_leaves_nothing(backend: Backend, size: int) -> None:
    store = backend.store
    data = payload(size)

    with pytest.raises(StorageError) as err:
        put_bytes(store, "evidence/clip", data, size=size + 1)

    assert not isinstance(err.value, DigestMismatch)
    assert str(size) in str(err.value)
    assert not store.exists("evidence/clip")
    assert list(store.list()) == []
    assert backend.leftovers() == []


def test_multipart_sized_object_round_trips_with_its_whole_sha256(backend: Backend) -> None:
    store = backend.store
    data = payload(LARGE)
    digest = digest_bytes(data)
    key = content_key(digest)
    stream = ChunkStream(iter([data[i : i + MIB] for i in range(0, LARGE, MIB)]))

    # No size given: the store has to find out it is large while reading.
    info = store.put(key, cast(BinaryIO, stream), expected=digest)

    assert info.size == LARGE
    assert info.sha256 == digest
    assert store.head(key).sha256 == digest
    assert hashlib.sha256(read_all(store, key)).hexdigest() == digest.hex
    if backend.kind != "local":
        assert backend.parts_of(key) == 3  # it really went up in 5 MiB parts
    assert backend.leftovers() == []


def test_memory_stays_bounded_whatever_the_object_size(store: ObjectStore) -> None:
    block = payload(MIB)
    blocks = 40
    h = hashlib.sha256()
    for b in repeated(block, blocks):
        h.update(b)
    digest = Digest("sha256", h.hexdigest())

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        store.put("huge", cast(BinaryIO, ChunkStream(repeated(block, blocks))), expected=digest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # 40 MiB went through; a store holding it all would peak above that. S3 holds one
    # 5 MiB part (plus the request's copy of it); the local store one read buffer.
    assert peak - base < 20 * MIB
    assert store.head("huge").size == blocks * MIB


# -- verification ------------------------------------------------------------------------


def test_verify_detects_bytes_changed_at_rest(backend: Backend) -> None:
    store = backend.store
    data = payload(SMALL)
    digest = digest_bytes(data)
    put_bytes(store, "clip", data)
    assert store.verify("clip", digest).size == len(data)

    backend.corrupt("clip")

    with pytest.raises(DigestMismatch) as err:
        store.verify("clip", digest)
    assert err.value.expected == digest
    assert err.value.actual != digest
    assert "clip" in str(err.value)


# -- keys --------------------------------------------------------------------------------

HOSTILE_KEYS = [
    "..",
    "a/../b",
    "/abs",
    "a\x00b",
    "x" * 600,
    "",
    "a//b",
    "./a",
    "a/",
    "C:\\x",
    "..\\x",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
def test_hostile_keys_are_refused_by_every_method(
    store: ObjectStore, key: str, tmp_path: Path
) -> None:
    digest = digest_bytes(b"x")
    source = tmp_path / "source"
    source.write_bytes(b"x")
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def local_file() -> None:
        with store.local_file(key, digest, scratch=scratch):
            pass

    calls: dict[str, Callable[[], object]] = {
        "put": lambda: store.put(key, io.BytesIO(b"x"), expected=digest),
        "put_file": lambda: store.put_file(key, source, expected=digest),
        "local_file": local_file,
        "open": lambda: store.open(key),
        "head": lambda: store.head(key),
        "exists": lambda: store.exists(key),
        "delete": lambda: store.delete(key),
        "verify": lambda: store.verify(key, digest),
        "set_retention": lambda: store.set_retention(key, datetime.now(UTC) + timedelta(1)),
        "set_legal_hold": lambda: store.set_legal_hold(key, True),
    }
    not_refused = []
    for name, call in calls.items():
        try:
            call()
        except InvalidKeyError:
            continue
        except Exception as exc:  # any other outcome is the failure shown
            not_refused.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            not_refused.append(f"{name}: accepted")
    assert not_refused == []
    assert list(store.list()) == []
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("prefix", ["..", "/abs", "a/../b", "a\x00b", "a//b"], ids=repr)
def test_hostile_list_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        list(store.list(prefix))


# -- deleting and missing objects --------------------------------------------------------


def test_delete_removes_the_object(store: ObjectStore) -> None:
    put_bytes(store, "a/clip", b"bytes")

    store.delete("a/clip")

    assert not store.exists("a/clip")
    assert list(store.list()) == []
    with pytest.raises(ObjectNotFound):
        store.head("a/clip")
    with pytest.raises(ObjectNotFound):
        store.delete("a/clip")


def test_missing_objects_raise_object_not_found_naming_the_key(store: ObjectStore) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.open("no/such"),
        lambda: store.head("no/such"),
        lambda: store.verify("no/such", digest_bytes(b"")),
        lambda: store.delete("no/such"),
    ]
    for call in calls:
        with pytest.raises(ObjectNotFound) as err:
            call()
        assert err.value.key == "no/such"
        assert "no/such" in str(err.value)
    assert store.exists("no/such") is False


def test_legal_hold_blocks_delete_until_released(backend: Backend) -> None:
    store = backend.store
    if backend.kind == "s3":
        pytest.skip("S3 legal holds need Object Lock: the s3-lock run covers them")
    put_bytes(store, "clip", b"evidence")
    store.set_legal_hold("clip", True)
    assert store.head("clip").legal_hold

    with pytest.raises(RetentionRefused):
        store.delete("clip")
    assert read_all(store, "clip") == b"evidence"

    store.set_legal_hold("clip", False)
    assert not store.head("clip").legal_hold
    store.delete("clip")
    assert not store.exists("clip")


# -- check -------------------------------------------------------------------------------


def test_check_reports_a_healthy_store_and_leaves_no_probe(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    store = backend.store
    report = store.check()

    failed = [c.name for c in report.checks if not c.ok]
    if backend.kind != "local" and request.getfixturevalue("s3_endpoint").is_moto:
        # moto stores bytes whatever their signed SHA-256 says: not a store for evidence.
        assert failed == ["verifies x-amz-content-sha256"]
        return
    assert failed == []
    assert report.ok
    assert report.url == store.url
    assert "round trip" in {c.name for c in report.checks}
    assert list(store.list()) == []


# -- files in, files out: what a station and a media worker use ---------------------------


def _file(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("verified", [False, True], ids=["unverified", "verified"])
@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "multipart"])
def test_put_file_stores_the_file_and_the_caller_may_remove_its_name(
    backend: Backend, tmp_path: Path, size: int, verified: bool
) -> None:
    store = backend.store
    data = payload(size, seed=size)
    digest = digest_bytes(data)
    key = content_key(digest)
    source = _file(tmp_path / "staging", "clip.part", data)

    info = store.put_file(key, source, expected=digest, size=size, verified=verified)

    assert (info.key, info.size) == (key, size)
    source.unlink()  # the caller's own name goes; the object stays
    assert read_all(store, key) == data
    assert store.verify(key, digest).size == size
    # The same bytes from another file: nothing changes.
    again = _file(tmp_path / "staging", "again.part", data)
    store.put_file(key, again, expected=digest, size=size, verified=verified)
    assert list(store.list()) == [key]
    assert backend.leftovers() == []


def test_put_file_refuses_a_file_that_does_not_hash_to_expected(
    backend: Backend, tmp_path: Path
) -> None:
    store = backend.store
    expected = digest_bytes(b"what was hashed while copying")
    source = _file(tmp_path / "staging", "clip.part", b"changed on disk since")

    with pytest.raises(DigestMismatch) as err:
        store.put_file(content_key(expected), source, expected=expected)

    assert err.value.expected == expected
    assert list(store.list()) == []
    assert backend.leftovers() == []


def test_put_file_over_a_damaged_held_copy_reports_it_and_replaces_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    """Bytes the store already holds are compared with the file, not taken on trust."""
    store = backend.store
    data = payload(SMALL, seed=7)
    digest = digest_bytes(data)
    key = content_key(digest)
    put_bytes(store, key, data)
    backend.corrupt(key)
    source = _file(tmp_path / "staging", "clip.part", data)

    with pytest.raises(DamagedObject) as err:
        store.put_file(key, source, expected=digest, size=len(data), verified=True)

    assert err.value.key == key
    assert err.value.expected == digest
    assert err.value.found != digest
    with pytest.raises(DigestMismatch):
        store.verify(key, digest)  # still the damaged bytes: replacing is replace_damaged's


def test_local_file_holds_the_objects_bytes_read_only_and_leaves_nothing_in_scratch(
    backend: Backend, tmp_path: Path
) -> None:
    store = backend.store
    data = payload(SMALL, seed=3)
    digest = digest_bytes(data)
    put_bytes(store, "a/clip", data)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    with store.local_file("a/clip", digest, scratch=scratch) as path:
        assert path.read_bytes() == data
        assert path.stat().st_mode & 0o222 == 0  # nobody writes through it

    assert list(scratch.iterdir()) == []
    assert read_all(store, "a/clip") == data


def test_local_file_of_a_missing_object_raises_not_found_and_leaves_nothing(
    store: ObjectStore, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    with (
        pytest.raises(ObjectNotFound) as err,
        store.local_file("no/such", digest_bytes(b""), scratch=scratch),
    ):
        pass

    assert err.value.key == "no/such"
    assert list(scratch.iterdir()) == []


def test_a_download_that_does_not_hash_right_is_never_handed_out(
    backend: Backend, tmp_path: Path
) -> None:
    if backend.kind == "local":
        pytest.skip("a directory store hands out its own file; verify() checks it at rest")
    store = backend.store
    data = payload(SMALL, seed=4)
    digest = digest_bytes(data)
    put_bytes(store, "clip", data)
    backend.corrupt("clip")
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    with (
        pytest.raises(DigestMismatch) as err,
        store.local_file("clip", digest, scratch=scratch),
    ):
        raise AssertionError("damaged bytes handed out")

    assert "clip" in str(err.value)
    assert list(scratch.iterdir()) == []


def test_capabilities_say_what_callers_must_do_themselves(backend: Backend, tmp_path: Path) -> None:
    """A station reads staged files back only where no server checks uploads, and a
    worker syncs a derivative before storing it only where the store links it."""
    store = backend.store
    directory = backend.kind == "local"
    assert store.server_verifies_checksums is not directory
    assert store.can_link(tmp_path) is directory


def test_create_makes_the_container_once(backend: Backend) -> None:
    store = backend.store

    made = [store.create(), store.create()]

    assert made == (["created", "existed"] if backend.kind == "local" else ["external"] * 2)
    assert store.check().checks[0].ok  # reachable


def test_remove_stale_temp_files_clears_what_killed_puts_left(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    store = backend.store
    put_bytes(store, "a/1", b"an object")
    backend.plant_non_objects()  # among them, what a killed put leaves
    assert len(backend.leftovers()) == 1

    if backend.kind == "local" or not request.getfixturevalue("s3_endpoint").is_moto:
        # Young: it may belong to a put still running (moto dates every upload 2010).
        assert store.remove_stale_temp_files() == 0
        assert len(backend.leftovers()) == 1
    assert store.remove_stale_temp_files(older_than_s=0) == 1

    assert backend.leftovers() == []
    assert list(store.list()) == ["a/1"]
    assert read_all(store, "a/1") == b"an object"


# -- LocalStore only: crash safety -------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys
    from storage.digest import Digest
    from storage.local import LocalStore

    root, key, hexdigest, chunks, chunk_size = sys.argv[1:]
    left, size = int(chunks), int(chunk_size)

    class Gated:
        # Each read waits for the parent's go-ahead, so the parent knows how far the
        # put has got when it kills us.
        def read(self, n=-1):
            global left
            print("want", flush=True)
            sys.stdin.readline()
            if left == 0:
                return b""
            left -= 1
            return bytes([left % 251]) * size

    LocalStore(root).put(key, Gated(), expected=Digest("sha256", hexdigest))
    print("done", flush=True)
    """
)
CHUNKS, CHUNK_SIZE = 16, 64 * 1024


def _child_bytes() -> bytes:
    return b"".join(bytes([left % 251]) * CHUNK_SIZE for left in range(CHUNKS - 1, -1, -1))


def _run_child_until(root: Path, key: str, reads_answered: int | None) -> int:
    """Run a put in a child process; SIGKILL it once it asks for read number
    ``reads_answered + 1`` (None: let it finish). Returns its exit status."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [str(root), key, digest_bytes(_child_bytes()).hex, str(CHUNKS), str(CHUNK_SIZE)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    answered = 0
    try:
        for line in proc.stdout:
            if line.strip() == "done":
                break
            if reads_answered is not None and answered == reads_answered:
                proc.send_signal(signal.SIGKILL)
                break
            proc.stdin.write("go\n")
            proc.stdin.flush()
            answered += 1
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


@pytest.mark.fault
@pytest.mark.parametrize("reads_answered", [1, CHUNKS // 2, CHUNKS], ids=["first", "half", "all"])
def test_local_sigkill_during_put_leaves_nothing_half_written(
    tmp_path: Path, reads_answered: int
) -> None:
    root = tmp_path / "objects"
    store = LocalStore(root)
    data = _child_bytes()
    key = content_key(digest_bytes(data))

    status = _run_child_until(root, key, reads_answered)

    assert status == -signal.SIGKILL
    assert list(store.list()) == []
    assert not store.exists(key)
    # The killed put left its temp file; that is what the housekeeping below is for.
    temps = [p for p in root.rglob(f"{TEMP_PREFIX}*")]
    assert len(temps) == 1
    assert 0 < temps[0].stat().st_size <= len(data)


@pytest.mark.fault
def test_local_sigkill_just_after_the_last_read_leaves_all_or_nothing(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalStore(root)
    data = _child_bytes()
    digest = digest_bytes(data)
    key = content_key(digest)

    # All chunks and the final empty read answered: killed while it fsyncs and links.
    _run_child_until(root, key, CHUNKS + 1)

    listed = list(store.list())
    assert listed in ([], [key])
    if listed:
        assert store.verify(key, digest).size == len(data)
    else:
        assert not store.exists(key)


@pytest.mark.fault
def test_local_stale_temp_files_are_removed_and_a_later_put_succeeds(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalStore(root)
    data = _child_bytes()
    digest = digest_bytes(data)
    key = content_key(digest)
    assert _run_child_until(root, key, CHUNKS // 2) == -signal.SIGKILL
    assert len(list(root.rglob(f"{TEMP_PREFIX}*"))) == 1

    # A temp file this fresh may belong to a put still running: left alone by default.
    assert store.remove_stale_temp_files() == 0
    assert len(list(root.rglob(f"{TEMP_PREFIX}*"))) == 1
    assert store.remove_stale_temp_files(older_than_s=0) == 1
    assert list(root.rglob(f"{TEMP_PREFIX}*")) == []

    assert _run_child_until(root, key, None) == 0
    assert list(store.list()) == [key]
    assert store.verify(key, digest).size == len(data)
