"""What `liuhen serve` runs: the HTTP API (``api.app.create_app``) with the web pages
and their static files mounted on it. The API does not import the pages (it stands on
its own for integrations); the pages stand on the API."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from api.app import create_app as create_api
from config import Settings
from web import admin_devices, admin_users, errors, pages, station
from web.render import STATIC


def create_app(settings: Settings, *, accel_redirect: str | None = None) -> FastAPI:
    """``api.app.create_app`` (same arguments) with the pages and /static."""
    app = create_api(settings, accel_redirect=accel_redirect)
    # The station screen's own listener (`liuhen serve` may set another port): only the
    # screen is served there.
    app.state.station_screen_port = settings.api.station_screen_port
    app.add_middleware(station.StationListenerGuard)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    # The administrators' pages (devices, users): their own permissions, checked there.
    app.include_router(admin_devices.router)
    app.include_router(admin_users.router)
    errors.install(app)  # the pages' errors as a page, the API's as JSON
    return app
