"""What only S3Store has: Object Lock, checksums the server checks, an endpoint that can
go away. The behaviour every store shares is in tests/test_store_contract.py.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from config.settings import StoreSettings
from storage.digest import digest_bytes
from storage.errors import (
    DigestMismatch,
    ObjectNotFound,
    RetentionRefused,
    StorageError,
    StoreUnavailable,
)
from storage.s3 import MAX_RETAIN_UNTIL, UNAVAILABLE_HINT, S3Store
from tests.fixtures.s3server import AlteringTlsProxy, S3Endpoint, TcpProxy, free_closed_port

pytestmark = pytest.mark.s3

MIB = 1 << 20
MakeStore = Callable[..., S3Store]


def put_bytes(store: S3Store, key: str, data: bytes, **kw: Any) -> Any:
    kw.setdefault("expected", digest_bytes(data))
    return store.put(key, io.BytesIO(data), **kw)


def read_all(store: S3Store, key: str) -> bytes:
    with store.open(key) as f:
        return f.read()


def versions(client: Any, bucket: str, key: str) -> list[str]:
    resp = client.list_object_versions(Bucket=bucket, Prefix=key)
    found = (resp.get("Versions") or []) + (resp.get("DeleteMarkers") or [])
    return [v["VersionId"] for v in found if v["Key"] == key]


def in_a_day() -> datetime:
    return (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)


@pytest.fixture
def lock_store(make_s3_store: MakeStore, s3_lock_bucket: str) -> S3Store:
    return make_s3_store(s3_lock_bucket, "evidence")


@pytest.fixture
def plain_store(make_s3_store: MakeStore, s3_bucket: str) -> S3Store:
    return make_s3_store(s3_bucket, "evidence")


# -- Object Lock -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 6 * MIB], ids=["small", "multipart"])
def test_retained_object_cannot_be_deleted_and_stays_readable(
    lock_store: S3Store, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    until = in_a_day()

    info = put_bytes(lock_store, "clip", data, retain_until=until)
    assert info.retain_until == until

    with pytest.raises(RetentionRefused) as err:
        lock_store.delete("clip")
    assert "clip" in str(err.value)
    assert "retained until" in str(err.value)
    assert lock_store.exists("clip")
    assert read_all(lock_store, "clip") == data
    assert list(lock_store.list()) == ["clip"]


def test_delete_on_a_lock_bucket_really_deletes_an_unretained_object(
    lock_store: S3Store, s3_client: Any
) -> None:
    put_bytes(lock_store, "probe", b"not evidence")

    lock_store.delete("probe")

    # No delete marker hiding a surviving version: the bytes are gone.
    assert versions(s3_client, lock_store.bucket, "evidence/probe") == []
    with pytest.raises(ObjectNotFound):
        lock_store.head("probe")


def test_retention_can_be_extended_but_not_shortened(lock_store: S3Store) -> None:
    until = in_a_day()
    put_bytes(lock_store, "clip", b"bytes", retain_until=until)

    later = until + timedelta(days=30)
    lock_store.set_retention("clip", later)
    assert lock_store.head("clip").retain_until == later

    with pytest.raises(RetentionRefused) as err:
        lock_store.set_retention("clip", until)
    assert "clip" in str(err.value)
    assert lock_store.head("clip").retain_until == later


def test_a_duplicate_put_with_longer_retention_extends_it(lock_store: S3Store) -> None:
    until = in_a_day()
    put_bytes(lock_store, "clip", b"bytes", retain_until=until)

    later = until + timedelta(days=7)
    info = put_bytes(lock_store, "clip", b"bytes", retain_until=later)

    assert info.retain_until == later


def test_legal_hold_blocks_delete_until_released(lock_store: S3Store, s3_client: Any) -> None:
    put_bytes(lock_store, "clip", b"evidence")

    lock_store.set_legal_hold("clip", True)
    assert lock_store.head("clip").legal_hold is True

    with pytest.raises(RetentionRefused) as err:
        lock_store.delete("clip")
    assert "legal hold" in str(err.value)
    assert read_all(lock_store, "clip") == b"evidence"

    lock_store.set_legal_hold("clip", False)
    assert lock_store.head("clip").legal_hold is False
    lock_store.delete("clip")
    assert not lock_store.exists("clip")
    assert versions(s3_client, lock_store.bucket, "evidence/clip") == []


def test_legal_hold_on_a_bucket_without_object_lock_says_why(plain_store: S3Store) -> None:
    put_bytes(plain_store, "clip", b"evidence")

    with pytest.raises(StorageError) as err:
        plain_store.set_legal_hold("clip", True)
    assert "Object Lock" in str(err.value)


def test_retention_a_century_ahead_is_kept_not_wrapped_into_the_past(
    lock_store: S3Store,
) -> None:
    # 永久 cases lock ~100 years ahead; Ceph RGW 16 keeps 32-bit seconds, so 2126 would
    # wrap to 1990 and the "permanent" object would be deletable at once.
    century = datetime.now(UTC) + timedelta(days=100 * 366)
    info = put_bytes(lock_store, "clip", b"evidence", retain_until=century)

    assert info.retain_until == MAX_RETAIN_UNTIL
    assert lock_store.head("clip").retain_until == MAX_RETAIN_UNTIL
    with pytest.raises(RetentionRefused):
        lock_store.delete("clip")
    put_bytes(lock_store, "later", b"attached later", retain_until=in_a_day())
    lock_store.set_retention("later", century)
    assert lock_store.head("later").retain_until == MAX_RETAIN_UNTIL
    with pytest.raises(RetentionRefused):
        lock_store.delete("later")


def test_retention_without_object_lock_is_left_to_the_catalog(plain_store: S3Store) -> None:
    info = put_bytes(plain_store, "clip", b"evidence", retain_until=in_a_day())
    assert info.retain_until is None
    plain_store.set_retention("clip", in_a_day())  # accepted, as LocalStore does
    with pytest.raises(ObjectNotFound):
        plain_store.set_retention("missing", in_a_day())


def test_check_reports_object_lock(
    lock_store: S3Store, plain_store: S3Store, s3_endpoint: S3Endpoint
) -> None:
    locked = lock_store.check()
    plain = plain_store.check()

    if not s3_endpoint.is_moto:  # moto verifies no upload: see the checksum tests
        assert locked.ok, locked.checks
        assert plain.ok, plain.checks
    assert locked.object_lock is True
    assert plain.object_lock is False
    details = {c.name: c.detail for c in locked.checks}
    assert details["object lock"].startswith("enabled")
    assert details["versioning"] == "Enabled"
    assert list(lock_store.list()) == []  # the probe was deleted, lock or not


# -- checksums ---------------------------------------------------------------------------


def _capture_headers(store: S3Store, operation: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def grab(request: Any, **_: Any) -> None:
        body = request.body
        if hasattr(body, "read"):  # botocore hands bytes bodies over as BytesIO
            pos = body.tell()
            data = body.read()
            body.seek(pos)
        else:
            data = body
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        seen.append({"headers": headers, "body": bytes(data)})

    store.client.meta.events.register(f"before-send.s3.{operation}", grab)
    return seen


@pytest.mark.parametrize(
    ("size", "operation"), [(1000, "PutObject"), (11 * MIB, "UploadPart")], ids=["put", "parts"]
)
def test_every_upload_carries_the_sha256_for_the_server_to_check(
    plain_store: S3Store, size: int, operation: str
) -> None:
    data = random.Random(3).randbytes(size)
    sent = _capture_headers(plain_store, operation)

    put_bytes(plain_store, "clip", data)

    assert sent
    for request in sent:
        headers = request["headers"]
        assert headers["x-amz-sdk-checksum-algorithm"] == "SHA256"
        assert headers["x-amz-checksum-sha256"] == digest_bytes(request["body"]).b64
    assert b"".join(r["body"] for r in sent) == data


def test_bytes_changed_in_transit_are_refused_by_the_server(
    plain_store: S3Store, s3_endpoint: S3Endpoint
) -> None:
    if s3_endpoint.is_moto:
        pytest.skip("moto stores whatever arrives: it checks no signed SHA-256 or checksum")
    data = random.Random(4).randbytes(1000)

    def flip(request: Any, **_: Any) -> None:
        body = bytearray(request.body)
        body[10] ^= 1
        request.body = bytes(body)

    plain_store.client.meta.events.register("before-send.s3.PutObject", flip)

    with pytest.raises(StorageError):
        put_bytes(plain_store, "clip", data)
    assert not plain_store.exists("clip")


# Same length: the altered body has the size the request announced.
MARK, ALTERED = b"<liuhen in-flight mark>", b"<ALTERED on the wire!!>"


@pytest.fixture
def altering_proxy(
    s3_endpoint: S3Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AlteringTlsProxy]:
    """https in front of the test server, altering MARK in every request body."""
    if s3_endpoint.is_moto:
        pytest.skip("moto stores whatever arrives: it checks no signed SHA-256 or checksum")
    if s3_endpoint.url.startswith("https"):
        pytest.skip("the altering proxy speaks plain http to the server behind it")
    proxy = AlteringTlsProxy(s3_endpoint.host, s3_endpoint.port, tmp_path / "tls", MARK, ALTERED)
    monkeypatch.setenv("AWS_CA_BUNDLE", proxy.ca_file)
    yield proxy
    proxy.close()


@pytest.mark.parametrize("size", [1000, 11 * MIB], ids=["put", "parts"])
def test_bytes_altered_on_the_wire_over_https_are_refused(
    make_s3_store: MakeStore,
    s3_bucket: str,
    s3_client: Any,
    altering_proxy: AlteringTlsProxy,
    size: int,
) -> None:
    # Over https botocore leaves payloads unsigned by default, and Ceph RGW ignores
    # x-amz-checksum-sha256: the store must still refuse to keep altered bytes.
    rnd = random.Random(6)
    data = rnd.randbytes(size - 600) + MARK + rnd.randbytes(600 - len(MARK))
    store = make_s3_store(s3_bucket, "evidence", endpoint_url=altering_proxy.url, max_attempts=1)

    with pytest.raises(StorageError) as err:
        put_bytes(store, "clip", data)

    assert altering_proxy.altered >= 1
    assert "evidence/clip" in str(err.value) or "/clip" in str(err.value)
    assert "nothing was stored" in str(err.value)
    direct = S3Store(s3_bucket, "evidence", store.options)
    assert not direct.exists("clip")
    assert not s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    # Without the alteration the same bytes go through the same https front.
    clean = data.replace(MARK, b"-" * len(MARK))
    assert put_bytes(store, "clean", clean).sha256 == digest_bytes(clean)
    assert read_all(direct, "clean") == clean


def test_store_check_finds_out_what_the_server_verifies(
    plain_store: S3Store, s3_endpoint: S3Endpoint, s3_client: Any, s3_bucket: str
) -> None:
    report = plain_store.check()

    rows = {c.name: c for c in report.checks}
    signed = rows["verifies x-amz-content-sha256"]
    if s3_endpoint.is_moto:
        # What the store relies on is missing: the check fails and says why.
        assert not signed.ok
        assert "accepted" in signed.detail and "changed in transit" in signed.detail
        assert not report.ok
    else:
        assert signed.ok and "refused" in signed.detail, signed
        assert report.ok, report.checks
    if s3_endpoint.kind == "rgw":
        # Ceph RGW 16: Content-MD5 is checked, x-amz-checksum-* is not; If-Match only
        # takes an unquoted ETag.
        assert "refused (BadDigest)" in rows["verifies Content-MD5"].detail
        assert rows["verifies x-amz-checksum-sha256"].detail.startswith("no: ")
        conditional = rows["conditional writes"].detail
        assert "If-None-Match: * refuses to replace an object" in conditional
        assert "If-Match accepts the unquoted ETag" in conditional
    # The probes leave nothing behind: no object, no version, no upload.
    assert list(plain_store.list()) == []
    assert not s3_client.list_object_versions(Bucket=s3_bucket).get("Versions")
    assert not s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")


def test_a_key_holding_other_bytes_is_never_overwritten(plain_store: S3Store) -> None:
    put_bytes(plain_store, "k", b"first")

    with pytest.raises(StorageError) as err:
        put_bytes(plain_store, "k", b"second")
    assert not isinstance(err.value, DigestMismatch)
    assert "already holds" in str(err.value)
    assert read_all(plain_store, "k") == b"first"


# -- an endpoint that goes away ----------------------------------------------------------


def test_unreachable_endpoint_is_store_unavailable_quickly(
    make_s3_store: MakeStore, s3_bucket: str
) -> None:
    endpoint = f"http://127.0.0.1:{free_closed_port()}"
    store = make_s3_store(
        s3_bucket, endpoint_url=endpoint, max_attempts=2, connect_timeout_s=1, read_timeout_s=2
    )
    attempts: list[str] = []
    store.client.meta.events.register(
        "before-send.s3", lambda request, **_: attempts.append(request.method)
    )

    with pytest.raises(StoreUnavailable) as err:
        put_bytes(store, "clip", b"bytes")

    # Quickly: a few tries as max_attempts allows, no retry loop and no body sent (no
    # clock: the CI machine is loaded).
    assert set(attempts) == {"HEAD"} and len(attempts) <= 2 * 2, attempts
    assert endpoint in str(err.value)
    assert err.value.hint == UNAVAILABLE_HINT
    assert err.value.__cause__ is not None
    report = store.check()  # reports, never raises
    assert not report.ok
    assert report.checks[0].name == "reachable"
    assert endpoint in report.checks[0].detail


def test_missing_bucket_is_named_with_what_to_do(make_s3_store: MakeStore) -> None:
    store = make_s3_store("liuhen-no-such-bucket")

    with pytest.raises(StorageError) as err:
        put_bytes(store, "clip", b"bytes")
    assert "liuhen-no-such-bucket" in str(err.value)
    assert "create the bucket" in str(err.value)
    # Not "every object is missing": the bucket is.
    with pytest.raises(StorageError) as err:
        store.exists("clip")
    assert not isinstance(err.value, ObjectNotFound)
    assert "liuhen-no-such-bucket" in str(err.value)
    assert not store.check().ok


def test_server_gone_and_back_loses_nothing(
    make_s3_store: MakeStore, s3_bucket: str, s3_proxy: TcpProxy
) -> None:
    store = make_s3_store(s3_bucket, "evidence", endpoint_url=s3_proxy.url, max_attempts=2)
    put_bytes(store, "first", b"safe before the outage")

    s3_proxy.cut()
    with pytest.raises(StoreUnavailable) as err:
        put_bytes(store, "second", b"during the outage")
    assert s3_proxy.url in str(err.value)

    s3_proxy.restore()
    assert read_all(store, "first") == b"safe before the outage"
    assert not store.exists("second")
    put_bytes(store, "second", b"during the outage")
    assert sorted(store.list()) == ["first", "second"]


class _CutAfter(io.RawIOBase):
    """A source that cuts the store's connection once ``after`` bytes have been read."""

    def __init__(self, data: bytes, after: int, proxy: TcpProxy) -> None:
        self._data, self._pos, self._after, self._proxy = data, 0, after, proxy

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self._pos >= self._after:
            self._proxy.cut()
        n = min(len(buf), len(self._data) - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def test_server_gone_mid_multipart_leaves_no_object_and_cleanup_finds_the_upload(
    make_s3_store: MakeStore,
    s3_bucket: str,
    s3_proxy: TcpProxy,
    s3_client: Any,
    s3_endpoint: S3Endpoint,
) -> None:
    store = make_s3_store(s3_bucket, "evidence", endpoint_url=s3_proxy.url, max_attempts=2)
    data = random.Random(5).randbytes(12 * MIB)

    with pytest.raises(StoreUnavailable) as err:
        store.put(
            "clip", cast(BinaryIO, _CutAfter(data, 6 * MIB, s3_proxy)), expected=digest_bytes(data)
        )
    # The abort could not reach the server either; the error says what is left.
    assert any("could not be aborted" in note for note in getattr(err.value, "__notes__", []))

    s3_proxy.restore()
    assert not store.exists("clip")
    pending = s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads") or []
    assert [u["Key"] for u in pending] == ["evidence/clip"]
    # Housekeeping leaves a young upload alone (it may be a put still running)...
    if not s3_endpoint.is_moto:  # moto dates every upload 2010
        assert store.remove_stale_temp_files(older_than_s=3600) == 0
    # ...and removes one older than asked.
    assert store.remove_stale_temp_files(older_than_s=0) == 1
    assert not s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    put_bytes(store, "clip", data)
    assert store.verify("clip", digest_bytes(data)).size == len(data)


# -- what a server's refusals become ---------------------------------------------------


def _stubbed_store() -> tuple[S3Store, Stubber]:
    # Nothing listens there: every answer below comes from the stubber, not the network.
    settings = StoreSettings(endpoint_url=f"http://127.0.0.1:{free_closed_port()}", max_attempts=1)
    store = S3Store("evidence-bucket", "ev", settings)
    stubber = Stubber(store.client)
    stubber.activate()
    return store, stubber


def test_access_denied_names_the_key_and_points_at_credentials() -> None:
    store, stubber = _stubbed_store()
    stubber.add_client_error("get_object", "AccessDenied", "Access Denied", 403)

    with pytest.raises(StorageError) as err:
        store.open("clip")

    assert "ev/clip" in str(err.value)
    assert err.value.hint is not None and "credentials" in err.value.hint
    assert isinstance(err.value.__cause__, ClientError)


def test_throttling_after_retries_is_store_unavailable() -> None:
    store, stubber = _stubbed_store()
    stubber.add_client_error("get_object", "SlowDown", "Please reduce your request rate", 503)

    with pytest.raises(StoreUnavailable) as err:
        store.open("clip")
    assert store.endpoint in str(err.value)


def test_a_refused_version_delete_on_a_lock_bucket_is_retention_refused() -> None:
    store, stubber = _stubbed_store()
    until = in_a_day()
    stubber.add_response(
        "head_object",
        {
            "ContentLength": 5,
            "VersionId": "v1",
            "ObjectLockMode": "GOVERNANCE",
            "ObjectLockRetainUntilDate": until,
        },
        {"Bucket": "evidence-bucket", "Key": "ev/clip"},
    )
    stubber.add_response(
        "get_object_lock_configuration",
        {"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}},
        {"Bucket": "evidence-bucket"},
    )
    stubber.add_client_error(
        "delete_object",
        "AccessDenied",
        "Access Denied because object protected by object lock.",
        403,
        expected_params={"Bucket": "evidence-bucket", "Key": "ev/clip", "VersionId": "v1"},
    )

    with pytest.raises(RetentionRefused) as err:
        store.delete("clip")
    assert "ev/clip" in str(err.value)
    assert until.isoformat() in str(err.value)
    stubber.assert_no_pending_responses()


# -- the test server itself --------------------------------------------------------------


def _daemons_of(directory: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if f"{directory}/ceph.conf".encode() in cmdline:
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_the_rgw_fixture_stops_exactly_the_daemons_it_started_even_on_failure(
    s3_client: Any,
) -> None:
    from tests.fixtures import rgw

    if rgw.missing_tools():
        pytest.skip("Ceph is not installed")
    with pytest.raises(RuntimeError, match="a test failed"), rgw.running_rgw() as server:
        started = _daemons_of(server.directory)
        assert len(started) == 3  # monitor, OSD, gateway
        raise RuntimeError("a test failed")

    assert _daemons_of(server.directory) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in started)
    assert not server.directory.exists()
    # The session's server (another cluster, or another server) is untouched.
    s3_client.list_buckets()


def test_start_up_cleanup_keeps_an_old_upload_whose_parts_still_arrive(
    plain_store: S3Store, s3_client: Any, s3_bucket: str
) -> None:
    """Another station's put over a slow link: started long ago, its last part just sent.
    A service starting elsewhere must not abort it; an old upload with no part is left
    over from a killed put, and goes."""
    full = f"{plain_store.prefix}/clip" if plain_store.prefix else "clip"
    live = s3_client.create_multipart_upload(Bucket=s3_bucket, Key=full)["UploadId"]
    etag = s3_client.upload_part(
        Bucket=s3_bucket, Key=full, UploadId=live, PartNumber=1, Body=b"x" * (5 * MIB)
    )["ETag"]
    dead = s3_client.create_multipart_upload(Bucket=s3_bucket, Key=f"{full}-2")["UploadId"]

    def started_two_days_ago(parsed: dict[str, Any], **_: Any) -> None:
        # Servers date an upload when it is created: report both as started long ago.
        for upload in parsed.get("Uploads") or ():
            upload["Initiated"] = datetime.now(UTC) - timedelta(days=2)

    plain_store.client.meta.events.register(
        "after-call.s3.ListMultipartUploads", started_two_days_ago
    )

    assert plain_store.remove_stale_temp_files(older_than_s=3600) == 1
    pending = s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads") or []
    assert [u["UploadId"] for u in pending] == [live]
    assert dead not in [u["UploadId"] for u in pending]
    # It is still a working upload: its put completes.
    s3_client.complete_multipart_upload(
        Bucket=s3_bucket,
        Key=full,
        UploadId=live,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert s3_client.get_object(Bucket=s3_bucket, Key=full)["ContentLength"] == 5 * MIB
