"""S3Store: immutable, SHA-256-checked objects in an S3 bucket (AWS, MinIO, Ceph RGW, OSS).

Every put is checked twice: we hash the bytes ourselves and refuse to make an object
visible unless they match the expected digest, and every request that carries bytes
(PutObject, UploadPart) is signed with the SHA-256 of exactly those bytes
(``x-amz-content-sha256``), which AWS, MinIO and Ceph RGW verify, refusing bytes changed
in transit. The ``x-amz-checksum-sha256`` sent as well is not relied on: Ceph RGW 16
ignores it. ``store check`` finds out what a server really verifies. An object becomes
visible only through a single PutObject or CompleteMultipartUpload, so a reader never
sees half of it, and a failed multipart upload is aborted rather than left behind.

On a bucket with Object Lock, retention is the server's job: puts carry the retention
date, and deletes name the object's version so the server can refuse them.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import copy
import hashlib
import io
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal
from urllib.parse import parse_qs, urlsplit

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from config.errors import ConfigError
from config.i18n import N_, _
from config.settings import StoreSettings
from storage.base import (
    CheckResult,
    ObjectInfo,
    StoreReport,
    check_held_copy,
    check_range,
    damaged_key,
)
from storage.digest import READ_SIZE, Digest, Hasher, digest_bytes, new_hasher
from storage.errors import (
    DigestMismatch,
    InvalidKeyError,
    ObjectNotFound,
    RepairRefused,
    RetentionRefused,
    StorageError,
    StoreFull,
    StoreUnavailable,
)
from storage.keys import validate_key, validate_prefix

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MIB = 1 << 20
# S3 refuses parts under 5 MiB (except the last) and uploads of more than 10,000 parts.
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
# x-amz-meta-sha256: the whole-object digest, which S3 itself only keeps for single-part
# objects (a multipart object's checksum is a checksum of part checksums).
SHA256_METADATA = "sha256"
# The latest retain-until date every server keeps: Ceph RGW 16 stores it as 32-bit
# unsigned seconds, and a later date wraps into the past (2126 became 1990), leaving
# 永久 evidence unprotected. Later dates are capped here, and each date set is read back.
MAX_RETAIN_UNTIL = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)

UNAVAILABLE_HINT = N_(
    "check that the object store is running and reachable; nothing was lost, retry"
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "503",
        "500",
    }
)
# "No room": a user or bucket quota (Ceph RGW, 403), a full MinIO (507), HTTP 507.
_FULL_CODES = frozenset({"QuotaExceeded", "XMinioStorageFull", "InsufficientStorage", "507"})
_CHECKSUM_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
# What servers answer for "this bucket has no Object Lock": AWS and MinIO send the first;
# S3-compatible servers without the feature send one of the others.
_NO_LOCK_CODES = frozenset(
    {
        "ObjectLockConfigurationNotFoundError",
        "ObjectLockConfigurationNotFound",
        "NotImplemented",
        "MethodNotAllowed",
        "XNotImplemented",
    }
)
_REFUSED_DELETE_CODES = frozenset({"AccessDenied", "InvalidRequest", "403"})
# A part or a whole small object in memory (botocore takes either as a body).
Chunk = bytes | bytearray
_ADDRESSING: dict[str, Literal["auto", "virtual", "path"]] = {
    "auto": "auto",
    "virtual": "virtual",
    "path": "path",
}


class S3Store:
    """An :class:`~storage.base.ObjectStore` on ``s3://bucket/prefix``.

    Credentials come from the boto credential chain (environment, profile, instance
    role), never from the settings.
    """

    # Every upload is signed with the SHA-256 of its bytes, which the server checks.
    server_verifies_checksums = True

    def __init__(
        self,
        bucket: str,
        prefix: str,
        options: StoreSettings,
        *,
        session: boto3.session.Session | None = None,
    ) -> None:
        """``session``: share one boto3 session between stores built on one thread;
        it saves loading the S3 service model again for each."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        if self.prefix:
            try:
                validate_key(self.prefix)
            except InvalidKeyError as exc:
                raise ConfigError(
                    _("store URL {url}: the prefix is not a valid key path: {error}").format(
                        url=self.url, error=exc.message
                    ),
                    hint=_("fix store.url"),
                ) from exc
        addressing = _ADDRESSING.get(options.addressing_style)
        if addressing is None:
            raise ConfigError(
                _("store.addressing_style {value} is not one of path, virtual, auto").format(
                    value=repr(options.addressing_style)
                ),
                hint=_("MinIO and Ceph usually need path"),
            )
        self.options = options
        self.multipart_threshold = max(1, options.multipart_threshold_mb) * MIB
        self.part_size = max(MIN_PART_SIZE, options.multipart_chunk_mb * MIB)
        config = Config(
            region_name=options.region or None,
            retries={"mode": "standard", "max_attempts": max(1, options.max_attempts)},
            connect_timeout=options.connect_timeout_s,
            read_timeout=options.read_timeout_s,
            # Signed payloads on https too (botocore signs them on http anyway): the
            # signed SHA-256 of the body is the one check every S3 server makes;
            # without it botocore sends UNSIGNED-PAYLOAD over https and a server that
            # ignores x-amz-checksum-* (Ceph RGW 16) stores whatever bytes arrive.
            s3={"addressing_style": addressing, "payload_signing_enabled": True},
            # We send our own SHA-256 with every upload; botocore's default would add
            # a CRC32 of its own on top and validate responses we re-hash anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # Not boto3's module-level default session: that is shared mutable state.
        # Typed Any on purpose: the S3 client stubs (mypy_boto3_s3) are optional.
        session = session or boto3.session.Session()
        self.client: Any = session.client(
            "s3", endpoint_url=options.endpoint_url or None, config=config
        )
        self.endpoint = str(self.client.meta.endpoint_url)
        self._lock_enabled: bool | None = None
        self._lock_detail = ""
        # Flipped off once if the server rejects If-None-Match (older S3-compatibles).
        self._conditional_writes = True
        self._bucket_seen = False

    # -- keys and errors ---------------------------------------------------------------

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str | None) -> str:
        return f"{self.url}/{key}" if key else self.url

    def _translate(self, exc: Exception, action: str, key: str | None) -> StorageError:
        """The LiuhenError a boto error means to a user; the caller keeps it as cause."""
        where = self._where(key)
        action = _(action)
        if isinstance(exc, NoCredentialsError):
            return StorageError(
                _("{where}: no S3 credentials found to {action}").format(
                    where=where, action=action
                ),
                hint=_(
                    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an "
                    "instance role; credentials never go in the settings file"
                ),
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StoreUnavailable(
                _(
                    "{where}: cannot {action}: the object store at {endpoint} "
                    "did not answer ({error})"
                ).format(where=where, action=action, endpoint=self.endpoint, error=exc),
                hint=_(UNAVAILABLE_HINT),
            )
        if not isinstance(exc, ClientError):
            return StorageError(
                _("{where}: cannot {action}: {error}").format(where=where, action=action, error=exc)
            )
        code = _error_code(exc)
        status = _status(exc)
        message = str(exc.response.get("Error", {}).get("Message") or code)
        if code == "NoSuchBucket" or (status == 404 and key is None):
            return StorageError(
                _("{store}: bucket {bucket} does not exist at {endpoint}").format(
                    store=self.url, bucket=self.bucket, endpoint=self.endpoint
                ),
                hint=_(
                    "create the bucket (with Object Lock enabled for evidence) or fix store.url"
                ),
            )
        if key is not None and (code in _NOT_FOUND_CODES or status == 404):
            return ObjectNotFound(self.url, key)
        if code in _FULL_CODES or status == 507:
            # Before the 403 test: RGW answers a quota it would exceed with 403. A full
            # store is a wait (nothing quarantined), as on the directory store.
            return StoreFull(
                _("{where}: cannot {action}: store full ({code}: {message})").format(
                    where=where, action=action, code=code, message=message
                ),
                hint=_(
                    "free space or raise the bucket's or user's quota; a station waits "
                    "and resumes by itself"
                ),
            )
        if code in _ACCESS_CODES or status == 403:
            return StorageError(
                _("{where}: access denied when trying to {action} ({code}: {message})").format(
                    where=where, action=action, code=code, message=message
                ),
                hint=_(
                    "check the S3 credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) and that "
                    "their policy allows this on bucket {bucket}"
                ).format(bucket=self.bucket),
            )
        if code in _CHECKSUM_CODES:
            return StorageError(
                _(
                    "{where}: the object store computed a different checksum than the one "
                    "sent ({code}); nothing was stored"
                ).format(where=where, code=code),
                hint=_("the bytes changed in transit; retry"),
            )
        if code in _TRANSIENT_CODES or status >= 500:
            return StoreUnavailable(
                _(
                    "{where}: cannot {action}: the object store at {endpoint} "
                    "answered {code}: {message}"
                ).format(
                    where=where, action=action, endpoint=self.endpoint, code=code, message=message
                ),
                hint=_(UNAVAILABLE_HINT),
            )
        return StorageError(
            _("{where}: cannot {action}: {error}").format(
                where=where, action=action, error=f"{code}: {message}"
            )
        )

    def _call(self, action: str, key: str | None, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, action, key) from exc

    # -- Object Lock -------------------------------------------------------------------

    def _object_lock(self) -> bool:
        """Whether the bucket has Object Lock enabled; asked once, then remembered."""
        if self._lock_enabled is None:
            try:
                resp = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) not in _NO_LOCK_CODES:
                    # Not knowing must not silently drop retention on evidence.
                    raise self._translate(
                        exc, N_("read the bucket's Object Lock configuration"), None
                    ) from exc
                self._lock_enabled = False
                self._lock_detail = _(
                    "not enabled on the bucket; retention is enforced by the catalog only"
                )
            except BotoCoreError as exc:
                raise self._translate(
                    exc, N_("read the bucket's Object Lock configuration"), None
                ) from exc
            else:
                conf = resp.get("ObjectLockConfiguration") or {}
                self._lock_enabled = conf.get("ObjectLockEnabled") == "Enabled"
                default = (conf.get("Rule") or {}).get("DefaultRetention") or {}
                if not self._lock_enabled:
                    self._lock_detail = _("not enabled on the bucket")
                elif default:
                    period = (
                        _("{count} days").format(count=default["Days"])
                        if "Days" in default
                        else _("{count} years").format(count=default.get("Years"))
                    )
                    self._lock_detail = _(
                        "enabled; bucket default retention {mode} {period}"
                    ).format(mode=default.get("Mode"), period=period)
                else:
                    self._lock_detail = _(
                        "enabled; no default retention, puts set {mode} retention"
                    ).format(mode=self.options.object_lock_mode)
        return self._lock_enabled

    def _lock_params(self, retain_until: datetime | None) -> dict[str, Any]:
        if retain_until is None or not self._object_lock():
            return {}
        return {
            "ObjectLockMode": self.options.object_lock_mode,
            "ObjectLockRetainUntilDate": _retention_date(retain_until),
        }

    # -- writing -----------------------------------------------------------------------

    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        expected: Digest,
        size: int | None = None,
        retain_until: datetime | None = None,
    ) -> ObjectInfo:
        full = self._full(key)
        if expected.algorithm != "sha256":
            raise ValueError("put verifies SHA-256")
        # Asked before any byte is sent, so an unknown lock state fails the put cleanly.
        lock_params = self._lock_params(retain_until)
        existing = self._head_or_none(key, full)
        if existing is not None:
            return self._confirm_existing(key, existing, stream, expected, size, retain_until)

        hasher = new_hasher("sha256")
        pieces: list[Chunk] = []
        if size is None or size < self.multipart_threshold:
            # Whether the object is small is only known once its end is reached. A size
            # below the threshold is trusted that far; without one, never buffer more
            # than a part: an unknown size in between goes up in parts, which is fine.
            limit = self.multipart_threshold
            if size is None:
                limit = min(limit, self.part_size)
            first = _read_up_to(stream, limit)
            pieces.append(first)
            if len(first) == limit:
                pieces.append(_read_up_to(stream, self.part_size))
            if not pieces[-1]:
                pieces.pop()
            if len(pieces) <= 1:  # the whole object is in memory, and small
                data = pieces[0] if pieces else b""
                hasher.update(memoryview(data))
                actual = Digest("sha256", hasher.hexdigest())
                self._check_bytes(key, expected, actual, len(data), size)
                return self._put_single(key, full, data, expected, retain_until, lock_params)
            del first
        return self._put_multipart(
            key, full, stream, pieces, hasher, expected, size, retain_until, lock_params
        )

    def put_file(
        self,
        key: str,
        source: Path,
        *,
        expected: Digest,
        size: int | None = None,
        retain_until: datetime | None = None,
        verified: bool = False,
        durable: bool = True,
    ) -> ObjectInfo:
        """See :meth:`storage.base.ObjectStore.put_file`: streamed through :meth:`put`,
        which hashes what it sends whether or not the caller ``verified`` the file (an
        object is durable once its upload is answered, whatever ``durable`` says).

        A put of a held key only compares the stream with the digest recorded with the
        object, so a held copy is then compared with ``source`` in full as well.
        """
        held = self.exists(key)
        with open(source, "rb") as stream:
            info = self.put(key, stream, expected=expected, size=size, retain_until=retain_until)
        if held:
            check_held_copy(self, key, source, expected)
        return info

    def can_link(self, folder: Path) -> bool:
        return False  # bytes reach a server only by upload

    def make_durable(self, keys: Sequence[str]) -> None:
        """Nothing to do: an answered upload is durable (see ObjectStore.make_durable)."""

    def _check_bytes(
        self, key: str, expected: Digest, actual: Digest, total: int, size: int | None
    ) -> None:
        if actual != expected:
            raise DigestMismatch(self._where(key), expected, actual)
        if size is not None and total != size:
            raise StorageError(
                _("{where}: got {got} bytes, expected {size}; nothing was written").format(
                    where=self._where(key), got=total, size=size
                ),
                hint=_("the source changed while it was read; retry"),
            )

    def _put_single(
        self,
        key: str,
        full: str,
        data: Chunk,
        expected: Digest,
        retain_until: datetime | None,
        lock_params: dict[str, Any],
    ) -> ObjectInfo:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Body": data,
            # The algorithm header as well as the value: AWS requires it (or Content-MD5)
            # on puts that carry Object Lock retention.
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": expected.b64,
            "Metadata": {SHA256_METADATA: expected.hex},
            **lock_params,
        }
        try:
            self._conditional(params, lambda p: self.client.put_object(**p))
        except ClientError as exc:
            if _status(exc) == 412:  # another writer put the same key meanwhile
                return self._settle(key, expected, retain_until)
            raise self._translate(exc, N_("write the object"), key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, N_("write the object"), key) from exc
        return self._settle(key, expected, retain_until)

    def _put_multipart(
        self,
        key: str,
        full: str,
        stream: BinaryIO,
        pieces: list[Chunk],
        hasher: Hasher,
        expected: Digest,
        size: int | None,
        retain_until: datetime | None,
        lock_params: dict[str, Any],
    ) -> ObjectInfo:
        part_size = self.part_size
        if size is not None:
            part_size = max(part_size, -(-size // MAX_PARTS))
        # The metadata is the expected digest: the upload only completes if the bytes
        # hash to it, so the object never carries a wrong one.
        resp = self._call(
            N_("start a multipart upload"),
            key,
            "create_multipart_upload",
            Key=full,
            ChecksumAlgorithm="SHA256",
            Metadata={SHA256_METADATA: expected.hex},
            **lock_params,
        )
        upload_id = str(resp["UploadId"])
        parts: list[dict[str, Any]] = []
        completed = False
        total = 0
        try:
            # Pieces are dropped as soon as they are sent: memory holds about one part.
            while True:
                piece = pieces.pop(0) if pieces else _read_up_to(stream, part_size)
                if not piece:
                    break
                hasher.update(memoryview(piece))
                total += len(piece)
                if size is not None and total > size:
                    break  # no point sending more; the check below refuses it
                self._send_part(key, full, upload_id, parts, piece)
                del piece
            self._check_bytes(key, expected, Digest("sha256", hasher.hexdigest()), total, size)
            completed = self._complete_multipart(key, full, upload_id, parts)
        except BaseException as exc:
            self._abort(full, upload_id, exc)
            raise
        if not completed:  # another writer completed the same key first
            self._abort(full, upload_id, None)
        return self._settle(key, expected, retain_until)

    def _send_part(
        self, key: str, full: str, upload_id: str, parts: list[dict[str, Any]], piece: Chunk
    ) -> None:
        """Upload the next part with its SHA-256, which the server checks on receipt."""
        number = len(parts) + 1
        if number > MAX_PARTS:
            raise StorageError(
                _("{where}: more than {count} parts").format(
                    where=self._where(key), count=MAX_PARTS
                ),
                hint=_("raise store.multipart_chunk_mb or pass the size to put"),
            )
        checksum = base64.b64encode(hashlib.sha256(piece).digest()).decode("ascii")
        part = self._call(
            _("upload part {number}").format(number=number),
            key,
            "upload_part",
            Key=full,
            UploadId=upload_id,
            PartNumber=number,
            Body=piece,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": checksum})

    def _complete_multipart(
        self, key: str, full: str, upload_id: str, parts: list[dict[str, Any]]
    ) -> bool:
        """Complete the upload unless the key exists; False when another writer completed
        the same key first (HTTP 412 on the conditional completion)."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": parts},
        }
        try:
            self._conditional(params, lambda p: self.client.complete_multipart_upload(**p))
        except ClientError as exc:
            if _status(exc) != 412:
                raise self._translate(exc, N_("complete the multipart upload"), key) from exc
            return False
        except BotoCoreError as exc:
            raise self._translate(exc, N_("complete the multipart upload"), key) from exc
        return True

    def _conditional(self, params: dict[str, Any], send: Callable[[dict[str, Any]], Any]) -> None:
        """Send with If-None-Match: * so an existing object is never replaced."""
        if self._conditional_writes:
            try:
                send({**params, "IfNoneMatch": "*"})
                return
            except ClientError as exc:
                if _error_code(exc) not in {"NotImplemented", "501"}:
                    raise
                self._conditional_writes = False
        send(params)

    def _abort(self, full: str, upload_id: str, cause: BaseException | None) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:
            if cause is not None:
                cause.add_note(
                    f"the incomplete multipart upload {upload_id} of {full} could not be "
                    f"aborted ({exc}); a bucket lifecycle rule AbortIncompleteMultipartUpload "
                    "removes such leftovers"
                )

    def _head_or_none(self, key: str, full: str) -> ObjectInfo | None:
        try:
            return self._info(key, self._head_raw(key, full))
        except ObjectNotFound:
            return None

    def _head_raw(self, key: str, full: str) -> Any:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=full)
        except (ClientError, BotoCoreError) as exc:
            error = self._translate(exc, N_("read metadata of"), key)
            if isinstance(error, ObjectNotFound) and not self._bucket_seen:
                # A HEAD has no body to say which is missing, the key or the bucket;
                # every key "missing" from a misnamed bucket would mislead.
                self._call(N_("reach the bucket"), None, "head_bucket")
                self._bucket_seen = True
            raise error from exc

    def _confirm_existing(
        self,
        key: str,
        existing: ObjectInfo,
        stream: BinaryIO,
        expected: Digest,
        size: int | None,
        retain_until: datetime | None,
    ) -> ObjectInfo:
        """Content addressing: the key exists, so only prove the stream is the same bytes."""
        hasher = new_hasher("sha256")
        total = 0
        while chunk := stream.read(READ_SIZE):
            hasher.update(chunk)
            total += len(chunk)
        self._check_bytes(key, expected, Digest("sha256", hasher.hexdigest()), total, size)
        return self._settle(key, expected, retain_until, existing)

    def _settle(
        self,
        key: str,
        expected: Digest,
        retain_until: datetime | None,
        existing: ObjectInfo | None = None,
    ) -> ObjectInfo:
        """The end of every put: the object under ``key`` holds ``expected`` and is
        retained at least until ``retain_until``."""
        info = existing or self.head(key)
        if info.sha256 is not None and info.sha256 != expected:
            raise StorageError(
                _(
                    "{where}: the key already holds an object with SHA-256 {held}, not {expected}"
                ).format(where=self._where(key), held=info.sha256.hex, expected=expected.hex),
                hint=_("objects are immutable; store the new bytes under their own key"),
            )
        if (
            retain_until is not None
            and self._object_lock()
            and (info.retain_until is None or info.retain_until < _retention_date(retain_until))
        ):
            # A duplicate may be evidence with a longer retention than the first copy;
            # and some servers (moto) ignore the retention sent with a multipart upload.
            self.set_retention(key, retain_until)
            info = self.head(key)
        return info

    # -- reading -----------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        full = self._full(key)
        resp = self._call(N_("read"), key, "get_object", Key=full)
        raw = _BodyReader(resp["Body"], self, key)
        return io.BufferedReader(raw, buffer_size=READ_SIZE)

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """See :meth:`storage.base.ObjectStore.read_range`: one GetObject with a Range
        header, so only the bytes asked for cross the network."""
        check_range(start, end)
        full = self._full(key)
        if start == end:
            self._head_raw(key, full)  # nothing to read, but a missing object is an error
            return iter(())
        try:
            resp = self.client.get_object(
                Bucket=self.bucket, Key=full, Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            if _error_code(exc) != "InvalidRange":
                raise self._translate(exc, "read", key) from exc
            # Starts at or past the end: S3 answers 416, the contract reads nothing.
            self._head_raw(key, full)
            return iter(())
        except BotoCoreError as exc:
            raise self._translate(exc, "read", key) from exc
        return _range_chunks(_BodyReader(resp["Body"], self, key), end - start)

    @contextlib.contextmanager
    def local_file(self, key: str, expected: Digest, *, scratch: Path) -> Iterator[Path]:
        """See :meth:`storage.base.ObjectStore.local_file`: a download into ``scratch``,
        hashed as it arrives, handed out read-only only if it hashes to ``expected``."""
        validate_key(key)  # a hostile key is refused before any file is made
        fd, name = tempfile.mkstemp(prefix=".object-", dir=scratch)
        try:
            hasher = new_hasher(expected.algorithm)
            with os.fdopen(fd, "wb") as out, self.open(key) as src:
                while chunk := src.read(READ_SIZE):
                    hasher.update(chunk)
                    out.write(chunk)
            actual = Digest(expected.algorithm, hasher.hexdigest())
            if actual != expected:
                raise DigestMismatch(self._where(key), expected, actual)
            os.chmod(name, 0o444)
            yield Path(name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def head(self, key: str) -> ObjectInfo:
        full = self._full(key)
        return self._info(key, self._head_raw(key, full))

    def _info(self, key: str, resp: Any) -> ObjectInfo:
        sha = None
        recorded = (resp.get("Metadata") or {}).get(SHA256_METADATA)
        if recorded:
            try:
                sha = Digest("sha256", str(recorded).lower())
            except ValueError:
                sha = None  # written by another tool; verify() still works
        until = resp.get("ObjectLockRetainUntilDate")
        modified = resp.get("LastModified")
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            sha256=sha,
            last_modified=_utc(modified) if modified else None,
            retain_until=_utc(until) if until else None,
            legal_hold=resp.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)  # before the generator starts, so a bad prefix fails here
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents") or ():
                    rel = str(obj["Key"])[len(base) :]
                    try:
                        validate_key(rel)
                    except InvalidKeyError:
                        continue  # not ours (a folder marker, another tool's name)
                    yield rel
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, N_("list objects"), None) from exc

    def verify(self, key: str, expected: Digest) -> ObjectInfo:
        hasher = new_hasher(expected.algorithm)
        with self.open(key) as f:
            while chunk := f.read(READ_SIZE):
                hasher.update(chunk)
        actual = Digest(expected.algorithm, hasher.hexdigest())
        if actual != expected:
            raise DigestMismatch(self._where(key), expected, actual)
        return self.head(key)

    # -- retention ---------------------------------------------------------------------

    def delete(self, key: str) -> None:
        full = self._full(key)
        # S3 answers a delete of a missing key with success; the contract says otherwise.
        resp = self._head_raw(key, full)
        if not self._object_lock():
            self._call(N_("delete"), key, "delete_object", Key=full)
            return
        # A plain delete on a versioned bucket only adds a delete marker: the locked
        # version survives and the server never checks its retention. Deleting the
        # version itself is what the server refuses while retention or a hold applies.
        version = resp.get("VersionId")
        params: dict[str, Any] = {"Key": full}
        if version:
            params["VersionId"] = version
        try:
            self.client.delete_object(Bucket=self.bucket, **params)
        except ClientError as exc:
            if _error_code(exc) in _REFUSED_DELETE_CODES or _status(exc) == 403:
                raise RetentionRefused(
                    _("{where}: the object store refused to delete it: {why}").format(
                        where=self._where(key), why=_protection(self._info(key, resp))
                    ),
                    hint=_(
                        "evidence under retention or legal hold cannot be deleted; "
                        "nothing was changed"
                    ),
                ) from exc
            raise self._translate(exc, N_("delete"), key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, N_("delete"), key) from exc

    def set_retention(self, key: str, until: datetime) -> None:
        full = self._full(key)
        until = _retention_date(until)
        resp = self._head_raw(key, full)
        if not self._object_lock():
            return  # like LocalStore: without Object Lock the catalog's rules decide
        current = resp.get("ObjectLockRetainUntilDate")
        if current is not None and until <= _utc(current):
            if until < _utc(current):
                # COMPLIANCE refuses this on the server; GOVERNANCE would need a bypass
                # we never ask for. Refuse here so both modes behave alike.
                raise RetentionRefused(
                    _("{where}: retained until {until}; cannot shorten to {asked}").format(
                        where=self._where(key),
                        until=_utc(current).isoformat(),
                        asked=until.isoformat(),
                    ),
                    hint=_("retention can only be extended"),
                )
            return
        current_mode = resp.get("ObjectLockMode")
        mode = "COMPLIANCE" if current_mode == "COMPLIANCE" else self.options.object_lock_mode
        params: dict[str, Any] = {
            "Key": full,
            "Retention": {"Mode": mode, "RetainUntilDate": until},
        }
        if resp.get("VersionId"):
            params["VersionId"] = resp["VersionId"]
        self._call(N_("set retention on"), key, "put_object_retention", **params)
        # Read back: a server may keep another date than the one it accepted.
        kept = self.head(key).retain_until
        if kept is None or kept < until:
            raise StorageError(
                _(
                    "{where}: the object store accepted retention until {asked} but keeps {kept}"
                ).format(
                    where=self._where(key),
                    asked=until.isoformat(),
                    kept=kept.isoformat() if kept else _("none"),
                ),
                hint=_(
                    "the object is stored but not protected as asked; check the server's "
                    "Object Lock support before storing evidence there"
                ),
            )

    def set_legal_hold(self, key: str, on: bool) -> None:
        full = self._full(key)
        resp = self._head_raw(key, full)
        if not self._object_lock():
            raise StorageError(
                _("{where}: cannot set a legal hold: bucket {bucket} has no Object Lock").format(
                    where=self._where(key), bucket=self.bucket
                ),
                hint=_("legal holds on S3 need a bucket created with Object Lock enabled"),
            )
        params: dict[str, Any] = {"Key": full, "LegalHold": {"Status": "ON" if on else "OFF"}}
        if resp.get("VersionId"):
            params["VersionId"] = resp["VersionId"]
        self._call(N_("set the legal hold on"), key, "put_object_legal_hold", **params)

    # -- housekeeping ------------------------------------------------------------------

    def create(self) -> Literal["created", "existed", "external"]:
        return "external"  # the bucket is its administrator's to create, with Object Lock

    def remove_stale_temp_files(self, older_than_s: float = 3600.0) -> int:
        """Abort multipart uploads left by a process killed mid-put (or a put whose abort
        could not reach the server). Returns how many. Like LocalStore's method of the
        same name, it leaves younger ones alone: they may be puts still running.

        An upload's age is that of its newest part (of its start when it has none): a
        station putting a long recording over a slow link started its upload hours ago
        but sends parts all along, and another station starting must not abort it."""
        base = f"{self.prefix}/" if self.prefix else ""
        cutoff = datetime.now(UTC).timestamp() - older_than_s
        removed = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=base
        )
        try:
            for page in pages:
                for upload in page.get("Uploads") or ():
                    if _utc(upload["Initiated"]).timestamp() >= cutoff:
                        continue
                    if self._abort_if_idle(upload["Key"], upload["UploadId"], cutoff):
                        removed += 1
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, N_("clean up incomplete uploads"), None) from exc
        return removed

    def _abort_if_idle(self, full: str, upload_id: str, cutoff: float) -> bool:
        """Abort the upload unless a part of it arrived at or after ``cutoff``; whether it
        was aborted here (not when it finished or was aborted meanwhile)."""
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=full, UploadId=upload_id
        )
        try:
            for page in pages:
                for part in page.get("Parts") or ():
                    if _utc(part["LastModified"]).timestamp() >= cutoff:
                        return False  # still being sent
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":  # finished or aborted meanwhile
                raise
            return False
        return True

    # -- checks ------------------------------------------------------------------------

    def check(self) -> StoreReport:
        checks: list[CheckResult] = []
        try:
            self._call(N_("reach the bucket"), None, "head_bucket")
        except StorageError as exc:
            checks.append(CheckResult(N_("reachable"), False, str(exc)))
            return StoreReport(self.url, checks)
        checks.append(
            CheckResult(
                N_("reachable"),
                True,
                _("bucket {bucket} at {endpoint}").format(
                    bucket=self.bucket, endpoint=self.endpoint
                ),
            )
        )

        try:
            status = self._call(N_("read versioning of"), None, "get_bucket_versioning").get(
                "Status"
            )
            checks.append(CheckResult(N_("versioning"), True, _versioning_text(status)))
        except StorageError as exc:
            checks.append(CheckResult(N_("versioning"), False, str(exc)))

        lock = False
        try:
            lock = self._object_lock()
            checks.append(CheckResult(N_("object lock"), True, self._lock_detail))
        except StorageError as exc:
            checks.append(CheckResult(N_("object lock"), False, str(exc)))

        try:
            self._call(N_("list objects"), None, "list_objects_v2", Prefix=self.prefix, MaxKeys=1)
            checks.append(CheckResult(N_("list"), True, _("list objects under the prefix")))
        except StorageError as exc:
            checks.append(CheckResult(N_("list"), False, str(exc)))

        checks.extend(self._upload_checks())
        checks.extend(self._round_trip())
        return StoreReport(self.url, checks, object_lock=lock)

    def _upload_checks(self) -> builtins.list[CheckResult]:
        """What the server really verifies of uploaded bytes, found by sending wrong values.

        Each probe is one part of a multipart upload that is aborted afterwards: no
        object is ever created, so no bucket retention can keep a probe around."""
        key = f"liuhen-check/{uuid.uuid4().hex}"
        full = self._full(key)
        try:
            resp = self._call(N_("start a probe upload"), key, "create_multipart_upload", Key=full)
        except StorageError as exc:
            return [CheckResult(N_("upload checks"), False, str(exc))]
        upload_id = str(resp["UploadId"])
        try:
            return [
                self._upload_probe(probe, number, full, upload_id)
                for number, probe in enumerate(_UPLOAD_PROBES, start=1)
            ]
        finally:
            self._abort(full, upload_id, None)

    def _upload_probe(
        self, probe: _UploadProbe, number: int, full: str, upload_id: str
    ) -> CheckResult:
        body = f"liuhen store check probe {number}".encode()
        params: dict[str, Any] = {
            "Key": full,
            "UploadId": upload_id,
            "PartNumber": number,
            "Body": body,
        }
        wrong = f"not the body {uuid.uuid4()}".encode()
        if probe.name == "Content-MD5":
            params["ContentMD5"] = base64.b64encode(hashlib.md5(wrong).digest()).decode()
        elif probe.name == "x-amz-checksum-sha256":
            params["ChecksumAlgorithm"] = "SHA256"
            params["ChecksumSHA256"] = base64.b64encode(hashlib.sha256(wrong).digest()).decode()

        def alter(request: Any, **_: Any) -> None:
            # After signing: the body no longer matches its signed SHA-256.
            query = parse_qs(urlsplit(request.url).query)
            if query.get("uploadId") == [upload_id] and query.get("partNumber") == [str(number)]:
                request.body = wrong[: len(body)].ljust(len(body), b".")

        hook = f"liuhen-store-check-{uuid.uuid4().hex}"
        if probe.name == "x-amz-content-sha256":
            self.client.meta.events.register("before-send.s3.UploadPart", alter, unique_id=hook)
        try:
            self.client.upload_part(Bucket=self.bucket, **params)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _CHECKSUM_CODES or _status(exc) == 400:
                return CheckResult(
                    f"verifies {probe.name}",
                    True,
                    _("a part with a wrong {header} was refused ({code}); {role}").format(
                        header=probe.name, code=code, role=_(probe.role)
                    ),
                )
            return CheckResult(
                f"verifies {probe.name}",
                False,
                str(self._translate(exc, N_("upload a probe part"), None)),
            )
        except BotoCoreError as exc:
            return CheckResult(
                f"verifies {probe.name}",
                False,
                str(self._translate(exc, N_("upload a probe part"), None)),
            )
        finally:
            self.client.meta.events.unregister("before-send.s3.UploadPart", unique_id=hook)
        if probe.relied_on:
            return CheckResult(
                f"verifies {probe.name}",
                False,
                _(
                    "a part with a wrong {header} was accepted: this server would store "
                    "bytes changed in transit; {role}"
                ).format(header=probe.name, role=_(probe.role)),
            )
        return CheckResult(
            f"verifies {probe.name}",
            True,
            _("no: a part with a wrong {header} was accepted; {role}").format(
                header=probe.name, role=_(probe.role)
            ),
        )

    def _round_trip(self) -> builtins.list[CheckResult]:
        payload = f"liuhen store check {uuid.uuid4()}".encode()
        expected = digest_bytes(payload)
        key = f"liuhen-check/{uuid.uuid4().hex}"
        try:
            self.put(key, io.BytesIO(payload), expected=expected, size=len(payload))
            with self.open(key) as f:
                if f.read() != payload:
                    return [
                        CheckResult(
                            N_("round trip"),
                            False,
                            _("{key}: read back other bytes").format(key=key),
                        )
                    ]
            self.verify(key, expected)
        except Exception as exc:  # reported, not raised: check lists every problem
            return [
                CheckResult(
                    N_("round trip"),
                    False,
                    _("write/read/verify failed: {error}").format(error=exc),
                )
            ]
        conditional = self._conditional_write_check(key, payload)
        return [conditional, self._remove_probe(key)]

    def _conditional_write_check(self, key: str, payload: bytes) -> CheckResult:
        """Whether If-None-Match: * refuses to replace the probe, and which form of its
        ETag If-Match accepts (Ceph RGW 16 refuses the quoted one boto sends)."""
        full = self._full(key)
        name = N_("conditional writes")
        try:
            etag = str(self._head_raw(key, full)["ETag"])
            self.client.put_object(
                Bucket=self.bucket,
                Key=full,
                Body=payload,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
            )
        except ClientError as exc:
            if _status(exc) != 412:
                return CheckResult(
                    name,
                    False,
                    f"If-None-Match: * on {key}: "
                    f"{self._translate(exc, N_('write the probe'), key)}",
                )
            if_none_match = _("If-None-Match: * refuses to replace an object")
        except (BotoCoreError, StorageError) as exc:
            return CheckResult(name, False, f"If-None-Match: * on {key}: {exc}")
        else:
            # Harmless for content-addressed objects: a second writer's bytes hash to the
            # same key, and every put checks what the key holds afterwards.
            if_none_match = _(
                "If-None-Match: * is ignored (Ceph RGW on a versioned bucket): two stations "
                "storing the same object at once may each write a version of the same bytes"
            )
        accepted = []
        for form in (etag, etag.strip('"')):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=full,
                    Body=payload,
                    IfMatch=form,
                    ChecksumAlgorithm="SHA256",
                )
            except (ClientError, BotoCoreError):
                continue
            accepted.append(_("quoted") if form.startswith('"') else _("unquoted"))
        if_match = (
            _("If-Match accepts the {forms} ETag").format(forms=_(" and ").join(accepted))
            if accepted
            else _("If-Match refuses the object's own ETag, quoted or not")
        )
        return CheckResult(
            name, True, _("{first}; {second}").format(first=if_none_match, second=if_match)
        )

    def _remove_probe(self, key: str) -> CheckResult:
        try:
            self.delete(key)
        except RetentionRefused:
            # A bucket default retention protects the probe too: that is the point.
            return CheckResult(
                N_("round trip"),
                True,
                _(
                    "write, read back and verify a probe object; its delete was refused by "
                    "the bucket's retention, so {key} stays until it expires"
                ).format(key=key),
            )
        except Exception as exc:
            return CheckResult(
                N_("round trip"),
                False,
                _("probe {key} written, delete failed: {error}").format(key=key, error=exc),
            )
        # The If-Match probe wrote versions of its own on a versioned bucket.
        with contextlib.suppress(ClientError, BotoCoreError):
            listing = self.client.list_object_versions(Bucket=self.bucket, Prefix=self._full(key))
            for v in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
                if v["Key"] == self._full(key):
                    self.client.delete_object(
                        Bucket=self.bucket, Key=v["Key"], VersionId=v["VersionId"]
                    )
        return CheckResult(
            N_("round trip"), True, _("write, read back, verify and delete a probe object")
        )

    # -- repair of a damaged object (the station, on a docking of bytes already held) ------

    def replace_damaged(
        self,
        key: str,
        source: Path,
        *,
        expected: Digest,
        found: Digest,
        retain_until: datetime | None = None,
    ) -> str:
        """See :meth:`storage.base.ObjectStore.replace_damaged`.

        The damaged bytes are copied aside on the server (and read back: they are the
        evidence of the damage); on a versioned bucket the damaged version stays as well.
        The good bytes then go up through :meth:`put` itself, with its checksums, on a
        twin of this store that neither sees the held object nor sends If-None-Match (an
        overwrite needs s3:PutObject only, which a station has). The result is read back
        in full, since some servers do not check the checksums sent with an upload.
        """
        aside = damaged_key(key, found)
        try:
            self.client.copy(
                CopySource={"Bucket": self.bucket, "Key": self._full(key)},
                Bucket=self.bucket,
                Key=self._full(aside),
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._repair_error(exc, key, N_("keep the damaged copy aside")) from exc
        self.verify(aside, found)
        twin = copy.copy(self)
        twin._conditional_writes = False
        twin._head_or_none = lambda _key, _full: None  # type: ignore[method-assign,assignment]
        try:
            with open(source, "rb") as stream:
                twin.put(
                    key,
                    stream,
                    expected=expected,
                    size=source.stat().st_size,
                    retain_until=retain_until,
                )
        except StorageError as exc:
            if isinstance(exc, StoreUnavailable) or not isinstance(
                exc.__cause__, ClientError | BotoCoreError
            ):
                raise
            raise self._repair_error(exc.__cause__, key, N_("replace the damaged copy")) from exc
        self.verify(key, expected)
        return aside

    def _repair_error(self, exc: Exception, key: str, action: str) -> StorageError:
        error = self._translate(exc, action, key)
        if isinstance(error, StoreUnavailable):
            return error
        return RepairRefused(
            _("{where}: the object store refused to {action}: {error}").format(
                where=self._where(key), action=_(action), error=error.message
            ),
            hint=_(
                "the bucket's Object Lock or policy forbids it; give the station the "
                "right to overwrite (s3:PutObject) or repair the object by hand, then dock "
                "the recorder again"
            ),
        )


@dataclass(frozen=True)
class _UploadProbe:
    name: str  # the value a probe part gets wrong
    relied_on: bool  # S3Store's guarantee rests on the server checking it
    role: str  # what S3Store does with it, for the report


_UPLOAD_PROBES = (
    _UploadProbe(
        "x-amz-content-sha256",
        True,
        N_("every put is signed with its SHA-256, so bytes changed in transit are refused"),
    ),
    _UploadProbe("Content-MD5", False, N_("not relied on")),
    _UploadProbe("x-amz-checksum-sha256", False, N_("sent with every put, not relied on")),
)


class _BodyReader(io.RawIOBase):
    """A GetObject body as a raw stream whose network errors are LiuhenErrors."""

    def __init__(self, body: Any, store: S3Store, key: str) -> None:
        super().__init__()
        self._body = body
        self._store = store
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailable(
                _(
                    "{where}: reading stopped: the object store at {endpoint} went away ({error})"
                ).format(
                    where=f"{self._store.url}/{self._key}", endpoint=self._store.endpoint, error=exc
                ),
                hint=_(UNAVAILABLE_HINT),
            ) from exc
        n = len(data)
        view[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _range_chunks(body: _BodyReader, length: int) -> Iterator[bytes]:
    """Up to ``length`` bytes of a ranged GetObject body in chunks of at most
    ``READ_SIZE``; the connection is released when done or when the consumer stops."""
    with body:
        buffered = io.BufferedReader(body, buffer_size=READ_SIZE)
        left = length
        while left > 0:
            chunk = buffered.read(min(READ_SIZE, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _read_up_to(stream: BinaryIO, n: int) -> Chunk:
    """Up to ``n`` bytes; fewer only at the end (a pipe's read may return less).

    Short reads are gathered in a bytearray, returned as is: converting it to bytes
    would hold the part twice."""
    first = stream.read(n)
    if not first or len(first) >= n:
        return first or b""
    buf = bytearray(first)
    del first
    while len(buf) < n:
        more = stream.read(n - len(buf))
        if not more:
            break
        buf += more
    return buf


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _utc(when: datetime) -> datetime:
    # A naive datetime from our own code means UTC; S3 wants an aware one.
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _retention_date(when: datetime) -> datetime:
    # Servers keep retention dates to the second; rounding up keeps "at least until"
    # true and stops a stored date from comparing earlier than the one asked for.
    when = _utc(when)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return min(when, MAX_RETAIN_UNTIL)


# In English as S3 says them (programs read the detail of `store check --json` too).
_VERSIONING = {"Enabled": N_("Enabled"), "Suspended": N_("Suspended")}


def _versioning_text(status: object) -> str:
    """A bucket's versioning state as S3 names it (Enabled, Suspended), for people."""
    if not status:
        return _("never enabled")
    return _(_VERSIONING.get(str(status), str(status)))


def _protection(info: ObjectInfo) -> str:
    reasons = []
    if info.legal_hold:
        reasons.append(_("it is under legal hold"))
    if info.retain_until is not None and info.retain_until > datetime.now(UTC):
        reasons.append(
            _("it is retained until {until}").format(until=info.retain_until.isoformat())
        )
    if not reasons:
        return _(
            "Object Lock retention or legal hold (or the credentials lack s3:DeleteObjectVersion)"
        )
    return _(" and ").join(reasons)
