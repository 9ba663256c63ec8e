"""The ASGI application: ``create_app(settings)`` (what ``liuhen serve`` runs)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import APIRouter, FastAPI

from api import cases, errors, markers, ops, recordings, session, users
from api.context import ApiContext
from api.jobs import ExportJobs
from api.timing import ServerTiming
from config import Settings
from config.errors import LiuhenError

PREFIX: Final = "/api/v1"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("liuhen")
    except PackageNotFoundError:  # run from a checkout without installing
        return "0.0.0"


def create_app(settings: Settings, *, accel_redirect: str | None = None) -> FastAPI:
    """The API over the catalog, store and signing key the settings name. The catalog's
    schema is checked on the first request that needs it (SchemaOutOfDate says to run
    `liuhen db upgrade`).

    ``accel_redirect``: behind nginx, the internal location that serves the directory
    store's files (e.g. ``/_liuhen_store/``): a permitted, audited media request is then
    answered with ``X-Accel-Redirect`` and nginx sends the bytes (docs/api.md)."""
    ctx = ApiContext(settings, accel_redirect=accel_redirect)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built once before the first request, not by two request threads at once; an
        # out-of-date schema is left for the requests to report (503, what to run).
        with contextlib.suppress(LiuhenError):
            ctx.catalog  # noqa: B018
        yield
        app.state.jobs.close()
        ctx.close()

    app = FastAPI(
        title="留痕 (liuhen) API",
        version=_version(),
        summary="Body-worn camera evidence: recordings, cases, exports and their custody.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.jobs = ExportJobs(ctx)
    errors.install(app)
    v1 = APIRouter(prefix=PREFIX)
    v1.include_router(session.router)
    v1.include_router(recordings.router)
    v1.include_router(markers.router)
    v1.include_router(cases.router)
    v1.include_router(ops.router)
    v1.include_router(users.router)
    app.include_router(v1)
    app.add_middleware(ServerTiming)  # how long each answer took the server (api/timing.py)
    return app
