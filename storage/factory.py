"""Build an object store from its URL: ``file:///path`` or ``s3://bucket/prefix``."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from config.errors import ConfigError
from config.i18n import _
from config.settings import StoreSettings
from storage.base import ObjectStore
from storage.local import LocalStore


def open_store(url: str, options: StoreSettings | None = None) -> ObjectStore:
    options = options or StoreSettings()
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise ConfigError(
                _("store URL {url}: file URLs take no host (file:///path)").format(url=repr(url))
            )
        return LocalStore(unquote(parts.path))
    if parts.scheme == "s3":
        from storage.s3 import S3Store  # boto3 is imported only when S3 is used

        if not parts.netloc:
            raise ConfigError(
                _("store URL {url}: name a bucket (s3://bucket/prefix)").format(url=repr(url))
            )
        return S3Store(parts.netloc, parts.path.strip("/"), options)
    raise ConfigError(
        _("store URL {url}: unsupported scheme {scheme}").format(
            url=repr(url), scheme=repr(parts.scheme)
        ),
        hint=_("use file:///path or s3://bucket/prefix"),
    )
