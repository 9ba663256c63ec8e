"""Stored objects over HTTP with byte ranges (RFC 9110 §14): one range per request, which
is what video players and download managers send.

``Range: bytes=a-b`` (and ``a-``, ``-n``) answers 206 with exactly those bytes, read from
the store with ``ObjectStore.read_range`` (a GetObject with a Range on S3), never the
whole object; no Range, another unit or several ranges answer 200 with the whole object
(a server may ignore what it does not serve); a range that does not fit the object
answers 416 with ``Content-Range: bytes */size``. ``If-Range`` with an ETag other than
the object's own sends the whole object, as the standard says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from fastapi.responses import Response, StreamingResponse

from api.context import ApiContext
from api.errors import ApiError
from config.i18n import _
from storage import ObjectStore
from storage.digest import READ_SIZE
from storage.keys import validate_key

_SPEC: Final = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiable(ApiError):
    http_status = 416

    def __init__(self, header: str, size: int) -> None:
        super().__init__(
            _("range {range!r} is not within the {size} bytes of this file").format(
                range=header, size=size
            ),
            hint=_("ask for bytes from 0 to {last}, e.g. Range: bytes=0-").format(
                last=max(size - 1, 0)
            ),
        )
        self.headers = {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive
    partial: bool  # answer 206 (a Range was honoured) rather than 200

    @property
    def length(self) -> int:
        return self.end - self.start


def byte_range(header: str | None, size: int, *, if_range: str | None, etag: str) -> ByteRange:
    """The bytes to send for a ``Range`` header (None: the whole object)."""
    whole = ByteRange(0, size, partial=False)
    if not header or (if_range is not None and if_range.strip() != etag):
        return whole
    unit, _sep, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in specs:
        return whole  # another unit, or several ranges: the whole object, 200
    m = _SPEC.match(specs)
    if m is None or (not m.group(1) and not m.group(2)):
        raise RangeNotSatisfiable(header, size)
    first, last = m.group(1), m.group(2)
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header, size)
        return ByteRange(max(size - n, 0), size, partial=True)
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header, size)
    return ByteRange(start, end, partial=True)


def stream_object(
    store: ObjectStore,
    key: str,
    size: int,
    rng: ByteRange,
    *,
    media_type: str,
    etag: str,
    filename: str | None = None,
) -> StreamingResponse:
    """The response for ``rng`` of the object; the store is asked for those bytes only.
    ``filename`` makes it a download (Content-Disposition: attachment)."""
    chunks: Iterator[bytes] = store.read_range(key, rng.start, rng.end)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(rng.length),
        "ETag": etag,
        "Cache-Control": "private, no-store",
    }
    if rng.partial:
        headers["Content-Range"] = f"bytes {rng.start}-{rng.end - 1}/{size}"
    if filename:
        headers["Content-Disposition"] = _attachment(filename)
    return StreamingResponse(
        chunks, status_code=206 if rng.partial else 200, media_type=media_type, headers=headers
    )


def accel_redirect(
    ctx: ApiContext, key: str, *, media_type: str, etag: str, filename: str | None
) -> Response:
    """Hand the sending of a directory store's object to nginx (``X-Accel-Redirect``):
    the request was authorized and audited here; nginx serves the file, ranges and all,
    with sendfile, from its internal location (never reachable by clients directly)."""
    validate_key(key)
    headers = {
        "X-Accel-Redirect": f"{ctx.accel_redirect or ''}{key}",
        "ETag": etag,
        "Cache-Control": "private, no-store",
        "Content-Type": media_type,
    }
    if filename:
        headers["Content-Disposition"] = _attachment(filename)
    return Response(status_code=200, headers=headers)


def _attachment(filename: str) -> str:
    """RFC 6266 with an RFC 5987 UTF-8 name (Chinese file names) and an ASCII fallback."""
    from urllib.parse import quote

    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def stream_file(
    path: Path, rng: ByteRange, size: int, *, media_type: str, filename: str
) -> StreamingResponse:
    """A finished local file (an export's .tar) as a download, with ranges, so a large
    hand-over resumes where a broken connection stopped."""
    f = path.open("rb")
    f.seek(rng.start)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(rng.length),
        "Content-Disposition": _attachment(filename),
        "Cache-Control": "private, no-store",
    }
    if rng.partial:
        headers["Content-Range"] = f"bytes {rng.start}-{rng.end - 1}/{size}"
    return StreamingResponse(
        _file_chunks(f, rng.length),
        status_code=206 if rng.partial else 200,
        media_type=media_type,
        headers=headers,
    )


def _file_chunks(f: BinaryIO, length: int) -> Iterator[bytes]:
    with f:
        left = length
        while left > 0:
            chunk = f.read(min(READ_SIZE, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
