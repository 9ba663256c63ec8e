"""Devices and assignments (the system administrator's, ``device.admin``): every
recorder with the officer who carries it now, a recorder's assignment history, and an
assignment list imported from CSV in the page.

The list and the history are ``catalog.devices.list_devices`` (what `liuhen device
list` prints); the import is ``catalog.device_import.import_device_file`` (what
`liuhen device import` runs): the same CSV columns, the same per-row refusals naming
the line and what is wrong, the good rows landing, and the same custody events
(device-registered, device-assigned) with the administrator as actor.
"""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.auth import Caller
from api.errors import status_of
from catalog.case_import import DEVICE_COLUMNS, ImportFileError
from config.errors import LiuhenError
from web.auth import csrf_ok, page_caller, to_login
from web.render import gettext_of, page
from web.uploads import UploadTooLarge, multipart_of

router = APIRouter(include_in_schema=False)
PERMISSION = "device.admin"


def _failed(request: Request, who: Caller, exc: LiuhenError) -> Response:
    values = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
    return page(request, who, "error.html", values)


def _devices(who: Caller) -> list[dict[str, Any]]:
    """Every device with its assignment history and the assignment current now."""
    from catalog.devices import list_devices

    with who.ctx.catalog.session() as s:
        devices = list_devices(s, who.ctx.zone)
    now = datetime.now(UTC)
    for d in devices:
        d["current"] = next(
            (a for a in reversed(d["assignments"]) if _covers(a, now)),
            None,
        )
    return devices


def _covers(assignment: dict[str, Any], at: datetime) -> bool:
    start = datetime.fromisoformat(assignment["start"])
    end = datetime.fromisoformat(assignment["end"]) if assignment["end"] else None
    return start <= at and (end is None or at < end)


def _list_page(request: Request, who: Caller, values: dict[str, Any] | None = None) -> Response:
    shown = {
        "devices": _devices(who),
        # The CSV's columns as the import reads them: each name, and its Chinese ones.
        "columns": [
            (name, "/".join(a for a in aliases if not a.isascii()))
            for name, aliases in DEVICE_COLUMNS.items()
        ],
        **(values or {}),
    }
    return page(request, who, "admin_devices.html", shown)


@router.get("/admin/devices")
def devices_page(request: Request) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    try:
        who.authorize(PERMISSION)  # a refusal is audited (access.denied) and shown as 403
    except LiuhenError as exc:
        return _failed(request, who, exc)
    return _list_page(request, who)


@router.get("/admin/devices/{serial}")
def device_page(request: Request, serial: str) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    try:
        who.authorize(PERMISSION)
    except LiuhenError as exc:
        return _failed(request, who, exc)
    found = next((d for d in _devices(who) if d["serial"] == serial), None)
    if found is None:
        _ = gettext_of(request)
        values = {
            "error": _("no device with serial {serial}").format(serial=serial),
            "hint": _("see the list of devices"),
            "http_status": 404,
        }
        return page(request, who, "error.html", values)
    return page(request, who, "admin_device.html", {"d": found})


@router.post("/admin/devices/import")
async def import_page(request: Request) -> Response:
    """The uploaded CSV imported as `liuhen device import` imports it; the page then
    lists the devices with the import's report (its refused rows first)."""
    who = page_caller(request)
    if who is None:
        return to_login(request)
    _ = gettext_of(request)
    try:
        who.authorize(PERMISSION)
    except LiuhenError as exc:
        return _failed(request, who, exc)
    try:
        posted = await multipart_of(request)
    except UploadTooLarge:
        return _list_page(
            request,
            who,
            {"import_error": _("the file is too large (at most 20 MB)"), "http_status": 413},
        )
    if not csrf_ok(request, posted.fields.get("csrf")):
        values = {
            "import_error": _("the form has expired: open the page again and repeat"),
            "http_status": 403,
        }
        return _list_page(request, who, values)
    name, data = posted.files.get("file", ("", b""))
    if not name or not data:
        values = {"import_error": _("choose a CSV file to import"), "http_status": 400}
        return _list_page(request, who, values)
    try:
        report = await run_in_threadpool(_import, who, name, data)
    except LiuhenError as exc:
        values = {
            "import_error": exc.message,
            "import_hint": exc.hint,
            # A file the import cannot read is the upload's fault (422), not a missing
            # file as the command line's exit code says.
            "http_status": 422 if isinstance(exc, ImportFileError) else status_of(exc),
        }
        return _list_page(request, who, values)
    values = {"report": report, "http_status": 422 if report["errors"] else 200}
    return _list_page(request, who, values)


def _import(who: Caller, name: str, data: bytes) -> dict[str, Any]:
    """The CSV, under the name it was uploaded with (the import names it in the
    assignments' notes, as the command line names its file), imported in one
    transaction."""
    from catalog.device_import import import_device_file

    with tempfile.TemporaryDirectory(prefix="liuhen-import-") as folder:
        path = Path(folder) / _safe_name(name)
        path.write_bytes(data)
        with who.ctx.catalog.transaction() as s:
            report = import_device_file(
                s,
                who.ctx.signer,
                path,
                actor=who.actor,
                zone=who.ctx.zone,
                settings=who.ctx.settings,
                store=who.ctx.store,
            )
        return report.as_dict()


def _safe_name(name: str) -> str:
    """The uploaded file's name as a file name of the temporary folder."""
    cleaned = re.sub(r"[\x00-\x1f/\\]", "_", name).strip(". ") or "upload.csv"
    return cleaned[:120]
