"""``Server-Timing: app;dur=<ms>`` on every answer to a GET or HEAD: how long the application took
from receiving the request to starting its answer, as the server saw it (a browser's
developer tools show it; bench/web.py and bench/api.py report it beside the latency the
client saw, which adds the network, the client and uvicorn's own queue).

Pure ASGI (no BaseHTTPMiddleware, which would put every response through an extra task
and memory stream): one clock read at the start, one when the answer's headers go out.
"""

from __future__ import annotations

import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER: Final = b"server-timing"
METRIC: Final = "app"


class ServerTiming:
    """ASGI middleware: ``Server-Timing: app;dur=<ms>`` on each answer to a read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Reads only: a login (or a password change) is a POST, and its time is not
        # handed out to the microsecond (its answer is kept as slow for a wrong login
        # as for a right one; a precise figure would only help someone telling them apart).
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                value = f"{METRIC};dur={ms:.1f}".encode("latin-1")
                message = {**message, "headers": [*message.get("headers", ()), (HEADER, value)]}
            await send(message)

        await self.app(scope, receive, timed)


def server_ms(header: str | None) -> float | None:
    """The ``app`` duration in a Server-Timing header's value (None when absent)."""
    for part in (header or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() != METRIC:
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None
