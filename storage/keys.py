"""The one key validator every store uses, and the content-addressed key scheme."""

from __future__ import annotations

import re

from config.i18n import _
from storage.digest import Digest
from storage.errors import InvalidKeyError

MAX_KEY_LENGTH = 512
# Segments start with a letter or digit, so '.', '..' and hidden temp names cannot be keys.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")
# A whole key of such segments joined by '/': the common case, checked in one match (a
# docking checks every object's key several times); any key it refuses goes through the
# checks below, which say what is wrong.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,127}(?:/[A-Za-z0-9][A-Za-z0-9._=-]{0,127})*")


def validate_key(key: object) -> str:
    """Return ``key`` if it is a well-formed object key, else raise InvalidKeyError."""
    if not isinstance(key, str):
        raise InvalidKeyError(
            _("object key must be a string, got {kind}").format(kind=type(key).__name__)
        )
    if len(key) <= MAX_KEY_LENGTH and _KEY.fullmatch(key):
        return key
    shown = repr(key[:80])
    if not key:
        raise InvalidKeyError(_("object key is empty"))
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            _("object key {key}... is {length} characters (max {max})").format(
                key=shown, length=len(key), max=MAX_KEY_LENGTH
            )
        )
    if "\x00" in key:
        raise InvalidKeyError(_("object key {key} contains a NUL character").format(key=shown))
    if key.startswith("/") or key.endswith("/"):
        raise InvalidKeyError(
            _("object key {key} must not start or end with '/'").format(key=shown)
        )
    for segment in key.split("/"):
        if segment in {"", ".", ".."}:
            raise InvalidKeyError(
                _("object key {key} has an empty, '.' or '..' segment").format(key=shown)
            )
        if not _SEGMENT.fullmatch(segment):  # (match let a final newline through)
            raise InvalidKeyError(
                _("object key {key} has an invalid segment {segment}").format(
                    key=shown, segment=repr(segment[:40])
                ),
                hint=_("keys use letters, digits, '.', '_', '=', '-' and '/' only"),
            )
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key followed by an optional '/'."""
    if prefix:
        validate_key(prefix.rstrip("/"))
    return prefix


def content_key(sha256: Digest) -> str:
    """The key of an object whose SHA-256 is ``sha256``: ``sha256/ab/cd/<hex>``."""
    if sha256.algorithm != "sha256":
        raise ValueError("content keys derive from SHA-256")
    h = sha256.hex
    return f"sha256/{h[:2]}/{h[2:4]}/{h}"
