"""Errors as JSON: ``{"error": {"message", "hint", "code"}}``, the message and hint the
command line prints for the same LiuhenError, and an HTTP status chosen from its exit
code (which already says what kind of failure it is)."""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.errors import (
    EXIT_CONFIG,
    EXIT_DATAERR,
    EXIT_IOERR,
    EXIT_NOINPUT,
    EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    LiuhenError,
)
from config.i18n import _

EXIT_NOPERM: Final = 77  # sysexits EX_NOPERM: access.policy.AccessDenied
# HTTP status by the error's exit code; an error class may name its own (http_status).
STATUS_BY_EXIT: Final = {
    EXIT_USAGE: 400,
    EXIT_DATAERR: 400,
    EXIT_NOINPUT: 404,
    EXIT_NOPERM: 403,
    EXIT_UNAVAILABLE: 503,
    EXIT_TEMPFAIL: 503,
    EXIT_IOERR: 503,
    EXIT_CONFIG: 503,
}
# Errors of other packages whose HTTP meaning the exit code does not carry.
STATUS_BY_NAME: Final = {
    "SimilarCase": 409,
    "StateConflict": 409,
    "LoginFailed": 401,
    "SessionExpired": 401,
}
log = logging.getLogger("liuhen.api")


class ErrorBody(BaseModel):
    message: str
    hint: str | None = None
    code: str


class ErrorResponse(BaseModel):
    """Every error the API answers."""

    error: ErrorBody


class ApiError(LiuhenError):
    """An error of the HTTP layer itself (a bad range, a missing login)."""

    http_status = 400

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None):
        super().__init__(message, hint=hint)
        if status is not None:
            self.http_status = status


def status_of(exc: LiuhenError) -> int:
    own = getattr(exc, "http_status", None)
    if isinstance(own, int):
        return own
    for cls in type(exc).__mro__:
        if cls.__name__ in STATUS_BY_NAME:
            return STATUS_BY_NAME[cls.__name__]
    return STATUS_BY_EXIT.get(exc.exit_code, 500)


def error_response(
    status: int,
    message: str,
    hint: str | None,
    code: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "hint": hint, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _liuhen_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LiuhenError)
    status = status_of(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    headers = getattr(exc, "headers", None)
    return error_response(status, exc.message, exc.hint, type(exc).__name__, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(_problem(e) for e in exc.errors())
    return error_response(
        422,
        _("the request is not valid: {problems}").format(problems=problems),
        _("see /api/v1/openapi.json for what this endpoint takes"),
        "RequestInvalid",
    )


def _problem(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
    return f"{where}: {error.get('msg', '')}"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    messages = {
        404: _("no such endpoint: {path}").format(path=request.url.path),
        405: _("{method} is not allowed on {path}").format(
            method=request.method, path=request.url.path
        ),
    }
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(
        exc.status_code,
        message,
        _("see /api/v1/openapi.json for the endpoints"),
        f"Http{exc.status_code}",
        dict(exc.headers) if exc.headers else None,
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # A value PostgreSQL refuses to store or compare (a NUL character, a number beyond
    # its column): the request's fault, not the server's.
    log.info("%s %s: value refused by the catalog: %s", request.method, request.url.path, exc)
    return error_response(
        400,
        _("the request holds a value the catalog cannot store or compare"),
        _("remove control characters such as NUL, and keep numbers within range"),
        "ValueRefused",
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug: logged with its traceback; the client learns only that it happened.
    log.error("%s %s: internal error", request.method, request.url.path, exc_info=exc)
    return error_response(
        500,
        _("internal error: {kind}").format(kind=type(exc).__name__),
        _("the server's log has the details; report it"),
        "InternalError",
    )


def install(app: FastAPI) -> None:
    from api.language import RequestLanguage

    # Messages in the language the request accepts (Accept-Language), per request.
    app.add_middleware(RequestLanguage)
    app.add_exception_handler(LiuhenError, _liuhen_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _internal_error)
