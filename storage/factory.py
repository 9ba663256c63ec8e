"""Build an object store from its URL: ``file:///path`` or ``s3://bucket/prefix``."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from config.errors import ConfigError
from config.settings import StoreSettings
from storage.base import ObjectStore
from storage.local import LocalStore


def open_store(url: str, options: StoreSettings | None = None) -> ObjectStore:
    options = options or StoreSettings()
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise ConfigError(f"store URL {url!r}: file URLs take no host (file:///path)")
        return LocalStore(unquote(parts.path))
    if parts.scheme == "s3":
        from storage.s3 import S3Store  # boto3 is imported only when S3 is used

        if not parts.netloc:
            raise ConfigError(f"store URL {url!r}: name a bucket (s3://bucket/prefix)")
        return S3Store(parts.netloc, parts.path.strip("/"), options)
    raise ConfigError(
        f"store URL {url!r}: unsupported scheme {parts.scheme!r}",
        hint="use file:///path or s3://bucket/prefix",
    )
