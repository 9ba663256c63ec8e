"""Object storage: the ObjectStore contract, LocalStore, S3Store, keys and digests."""

from storage.base import CheckResult, ObjectInfo, ObjectStore, StoreReport
from storage.digest import Digest, digest_bytes, digest_stream, new_hasher
from storage.durable import fsync_dir, fsync_file
from storage.errors import (
    DigestMismatch,
    InvalidKeyError,
    ObjectNotFound,
    RetentionRefused,
    StorageError,
    StoreUnavailable,
)
from storage.factory import open_store
from storage.keys import content_key, validate_key
from storage.local import LocalStore

__all__ = [
    "CheckResult",
    "Digest",
    "DigestMismatch",
    "InvalidKeyError",
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "RetentionRefused",
    "StorageError",
    "StoreReport",
    "StoreUnavailable",
    "content_key",
    "digest_bytes",
    "digest_stream",
    "fsync_dir",
    "fsync_file",
    "new_hasher",
    "open_store",
    "validate_key",
]
