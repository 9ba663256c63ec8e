"""The language of each answer: the request's ``Accept-Language`` (``zh`` → Chinese,
``en`` → English, the highest ``q`` of those two winning), else the server's language
(Chinese unless ``LIUHEN_LANG`` or ``--lang`` says otherwise).

Chosen per request in a context variable (config.i18n.language_for), so two requests
answered at once, in two threads, each read their own language."""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from config.i18n import LANGUAGES, language_for

MAX_HEADER: Final = 200  # a longer Accept-Language is not read further


def preferred_language(header: str | None) -> str | None:
    """``zh`` or ``en``, whichever the header prefers (RFC 9110 §12.5.4: by ``q``, then
    by order); None when it names neither."""
    best: tuple[float, int, str] | None = None
    for order, item in enumerate((header or "")[:MAX_HEADER].split(",")):
        tag, _sep, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        # zh-CN, zh-Hans, zh-TW: Chinese to read; en-US, en-GB: English.
        name = tag.strip().lower().split("-")[0]
        if name not in LANGUAGES:
            continue
        candidate = (-quality, order, name)
        if best is None or candidate < best:
            best = candidate
    return best[2] if best is not None else None


class RequestLanguage:
    """ASGI middleware: the request's language for everything answered inside it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers", ()):
            if key == b"accept-language":
                header = value.decode("latin-1")
                break
        with language_for(preferred_language(header)):
            await self.app(scope, receive, send)
