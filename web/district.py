"""The district status page (``/district``): stations, workers, queues, stuck work,
failures, storage and expiry — what `liuhen district status` prints, from the API's own
handler (``api.ops.district``: the policy decides who may read it)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from api import ops
from api.errors import status_of
from config.errors import LiuhenError
from web.auth import page_caller, to_login
from web.render import page

router = APIRouter(include_in_schema=False)


@router.get("/district")
def district_page(request: Request) -> Response:
    who = page_caller(request)
    if who is None:
        return to_login(request)
    try:
        status = ops.district(who, expiry_within_days=30)
    except LiuhenError as exc:
        failed = {"error": exc.message, "hint": exc.hint, "http_status": status_of(exc)}
        return page(request, who, "error.html", failed)
    return page(request, who, "district.html", {"d": status})
