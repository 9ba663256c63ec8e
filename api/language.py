"""The language of each answer: what the reader chose in the web application (``?lang=``
or its cookie, ``liuhen_lang``), else, for the API (``/api/``), the request's
``Accept-Language`` (``zh`` → Chinese, ``en`` → English, the highest ``q`` of those two
winning), else the server's language (Chinese unless ``LIUHEN_LANG`` or ``--lang`` says
otherwise). A page and the messages the API makes for it are then in one language.

Chosen per request in a context variable (config.i18n.language_for), so two requests
answered at once, in two threads, each read their own language."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Final
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from config.i18n import LANG_COOKIE, LANGUAGES, language_for, normalise_language

MAX_HEADER: Final = 200  # a longer Accept-Language is not read further


def chosen_language(query: str, cookie_header: str | None) -> str | None:
    """The language a reader chose: ``?lang=`` first, else the cookie; None if neither
    names one (a bad value is passed over, never an error)."""
    asked = parse_qs(query[:MAX_HEADER]).get("lang", [])
    if cookie_header:
        try:
            jar = SimpleCookie(cookie_header[:4096])
        except CookieError:
            jar = SimpleCookie()
        if LANG_COOKIE in jar:
            asked.append(jar[LANG_COOKIE].value)
    for value in asked:
        try:
            return normalise_language(value)
        except ValueError:
            continue
    return None


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
        header = cookies = None
        for key, value in scope.get("headers", ()):
            if key == b"accept-language":
                header = value.decode("latin-1")
            elif key == b"cookie":
                cookies = value.decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        chosen = chosen_language(query, cookies)
        if chosen is None and str(scope.get("path", "")).startswith("/api/"):
            # A program's request says its language in the header; the web pages stay
            # Chinese first until the reader switches (a browser's English header is
            # often only how it was installed).
            chosen = preferred_language(header)
        with language_for(chosen):
            await self.app(scope, receive, send)
