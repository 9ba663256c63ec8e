"""Pages from Jinja2 templates, in the reader's language and the station's time zone.

The language of a page is chosen per request (``?lang=en`` or ``?lang=zh``, remembered
in a cookie; else the server's language: Chinese unless ``LIUHEN_LANG`` says otherwise).
``config.i18n`` chooses one language per process, so pages do not switch it: they look
their texts up in the same catalog (``config.i18n.load_catalog``) for the language of
their own request, which lets two readers in two languages share one server.

Template texts are English, wrapped as ``{{ _("...") }}``; tests/test_web_i18n.py checks
that each has its Chinese in the catalog (area ``web.po``).
"""

from __future__ import annotations

import gettext
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from api.auth import Caller
from config import i18n
from config.timetext import show_clock, show_time

TEMPLATES: Final = Path(__file__).parent / "templates"
STATIC: Final = Path(__file__).parent / "static"


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["mb"] = lambda n: f"{(n or 0) / 1e6:.1f}"
    return env


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalog of ``lang`` (``zh``: the project's Chinese catalog, all areas)."""
    return i18n.load_catalog() if lang == "zh" else gettext.NullTranslations()


def page_language(request: Request) -> str:
    """``zh`` or ``en``: the query's ``lang``, else the cookie, else the server's (chosen
    for the whole request, API messages included, by api.language.RequestLanguage)."""
    return i18n.language()


def gettext_of(request: Request) -> Callable[[str], str]:
    """``_`` for the request's language (for texts made in Python for a page)."""
    return translations(page_language(request)).gettext


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    zone: tzinfo,
    status: int = 200,
) -> Response:
    """The page ``template`` with ``context``; remembers a language asked for by URL."""
    lang = page_language(request)
    t = translations(lang)

    def when(value: datetime | str | None) -> str:
        return show_time(value, zone)

    def clock(value: datetime | str | None) -> str:
        return show_clock(value, zone)

    html = (
        _environment()
        .get_template(template)
        .render(
            {
                "_": t.gettext,
                "ngettext": t.ngettext,
                "lang": lang,
                "other_lang": "en" if lang == "zh" else "zh",
                "when": when,
                "clock": clock,
                "request": request,
                "path": request.url.path,
                **context,
            }
        )
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    if request.query_params.get("lang"):
        response.set_cookie(i18n.LANG_COOKIE, lang, samesite="strict", max_age=365 * 86400)
    return response


def page(request: Request, who: Caller, template: str, values: Mapping[str, Any]) -> Response:
    """A page for a logged-in user: who they are, the CSRF token of their session for
    the page's forms, and which areas the navigation offers them. ``http_status`` in
    ``values`` is the answer's status (an error shown in the page)."""
    from api.auth import CSRF_COOKIE

    shown = dict(values)
    status = int(shown.pop("http_status", 200))
    context = {
        "user": who.principal,
        "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "can_audit": who.allowed("audit.view") or who.allowed("audit.admin_view"),
        "can_district": who.allowed("district.status"),
        "can_devices": who.allowed("device.admin"),
        "can_users": who.allowed("user.admin") or who.allowed("role.admin"),
        **shown,
    }
    return render(request, template, context, zone=who.ctx.zone, status=status)
