"""`liuhen serve`: the HTTP API (api/) on uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from config.i18n import _
from liuhen.output import err

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def run_serve(
    app: Any,
    *,
    host: str,
    port: int,
    certfile: Path | None,
    keyfile: Path | None,
    accel_redirect: str | None = None,
) -> None:
    import uvicorn

    from web.app import create_app  # the API with the web pages on it

    if (certfile is None) != (keyfile is None):
        raise click.UsageError(_("give both --tls-cert and --tls-key, or neither"))
    app.ready_catalog()  # an out-of-date schema is said now, not at the first request
    scheme = "https" if certfile else "http"
    err.print(
        _("serving the API on {url}/api/v1 (description: {url}/api/v1/openapi.json)").format(
            url=f"{scheme}://{host}:{port}"
        ),
        markup=False,
    )
    if certfile is None and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            _(
                "warning: plain HTTP on {host}: put a TLS reverse proxy in front, or give "
                "--tls-cert and --tls-key"
            ).format(host=host),
            markup=False,
        )
    uvicorn.run(
        create_app(app.settings, accel_redirect=accel_redirect),
        host=host,
        port=port,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        # Request lines carry no secrets (tokens go in headers), but access logs belong
        # to the reverse proxy; ours would only double them.
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )


def register(cli: click.Group, pass_ctx: Decorator, json_option: Decorator) -> None:
    @cli.command("serve")
    @click.option("--host", default=None, help="Address to listen on [api.host: 127.0.0.1].")
    @click.option(
        "--port",
        type=click.IntRange(1, 65535),
        default=None,
        help="Port to listen on [api.port: 8000].",
    )
    @click.option(
        "--tls-cert",
        "certfile",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="TLS certificate (PEM) [api.tls_cert]; without it, serve behind a TLS reverse proxy.",
    )
    @click.option(
        "--tls-key",
        "keyfile",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="TLS private key (PEM) [api.tls_key].",
    )
    @click.option(
        "--accel-redirect",
        metavar="LOCATION",
        help="Behind nginx: its internal location serving the directory store (e.g. "
        "/_liuhen_store/); nginx then sends the media bytes (docs/api.md) "
        "[api.accel_redirect].",
    )
    @pass_ctx
    def serve(
        ctx: Any,
        host: str | None,
        port: int | None,
        certfile: Path | None,
        keyfile: Path | None,
        accel_redirect: str | None,
    ) -> None:
        """Serve the HTTP API (JSON under /api/v1, described at /api/v1/openapi.json)."""
        app = ctx.app()
        api = app.settings.api  # the settings, where the command line says nothing
        run_serve(
            app,
            host=host or api.host,
            port=port or api.port,
            certfile=certfile or _path(api.tls_cert),
            keyfile=keyfile or _path(api.tls_key),
            accel_redirect=accel_redirect or api.accel_redirect or None,
        )


def _path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None
