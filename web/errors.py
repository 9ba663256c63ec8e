"""Errors of the pages answered as a page: the API's handlers (``api.errors``) answer
JSON in the server's language, with the path or the exception's kind; a person who
opens a wrong address or meets a bug gets the error page in their own language instead,
saying only what happened (the details stay in the server's log, which the API's
handler writes as before)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from config.i18n import N_
from web.render import gettext_of, render

ApiHandler = Callable[[Request, Any], Response | Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]

# What a page's error says, by status; anything else is said as the 400 is.
SAID = {
    400: N_("This address is not valid."),
    404: N_("There is no such page."),
    405: N_("This page cannot be opened that way."),
    422: N_("This address is not valid."),
    500: N_("Something went wrong on the server. It is written in the server's log."),
}


def install(app: FastAPI) -> None:
    """Wrap each error handler the API installed: its answer for the API and /static,
    the error page for the pages."""
    for kind, api_handler in list(app.exception_handlers.items()):
        app.add_exception_handler(kind, _for_pages(api_handler))


def _for_pages(api_handler: ApiHandler) -> Handler:
    async def handler(request: Request, exc: Exception) -> Response:
        answer = api_handler(request, exc)  # logged as the API logs it
        if inspect.isawaitable(answer):
            answer = await answer
        if request.scope["type"] != "http" or request.url.path.startswith(("/api/", "/static/")):
            return answer
        status = answer.status_code
        _ = gettext_of(request)
        said = SAID.get(status, SAID[500] if status >= 500 else SAID[400])
        values = {"error": _(said), "bare": False}
        zone = request.app.state.ctx.zone
        return render(request, "error.html", values, zone=zone, status=status)

    return handler
