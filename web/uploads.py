"""A file sent by a page form (``multipart/form-data``), read with the standard
library's MIME parser: the form works without the page's script, and the server needs
no multipart package for the one upload it takes (an assignment list)."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

# An assignment list of a district is a few thousand rows: far below this.
UPLOAD_MAX: Final = 20 * 1024 * 1024
# The form has a handful of fields and one file; a body of thousands of tiny parts is
# not a form of ours, and parsing it would only cost time.
PARTS_MAX: Final = 32


class UploadTooLarge(ValueError):
    """The form's body is over :data:`UPLOAD_MAX`."""


@dataclass(frozen=True)
class Posted:
    """A multipart form: its text fields, and its files as (file name, bytes)."""

    fields: dict[str, str]
    files: dict[str, tuple[str, bytes]]


async def multipart_of(request: Request) -> Posted:
    """The fields and files of a posted multipart form (first of each name); an empty
    form when the body is not multipart."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        return Posted({}, {})
    body = bytearray(f"Content-Type: {kind}\r\nMIME-Version: 1.0\r\n\r\n", "latin-1", "replace")
    async for chunk in request.stream():
        body += chunk
        if len(body) > UPLOAD_MAX:
            raise UploadTooLarge(len(body))
    # Parsed in a worker thread: the event loop also serves the station screen.
    return await run_in_threadpool(_parse, bytes(body))


def _parse(body: bytes) -> Posted:
    boundary_count = body.count(b"\r\n--")
    if boundary_count > PARTS_MAX + 1:
        raise UploadTooLarge(len(body))
    message = BytesParser(policy=policy.HTTP).parsebytes(body)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name in fields or name in files:
            continue
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = data.decode("utf-8", errors="replace")
        else:
            files[name] = (_readable(filename), data)
    return Posted(fields, files)


def _readable(filename: str) -> str:
    """A browser sends a UTF-8 file name as raw bytes, which the MIME parser keeps as
    escaped characters: the name as the person sees it, without any folder."""
    try:
        name = filename.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        name = filename
    return name.replace("\\", "/").rsplit("/", 1)[-1]
