"""`liuhen serve`: the HTTP API (api/) and the web pages on uvicorn, and the station's
own screen on a second, loopback-only listener."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
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
    station_port: int | None = None,
) -> None:
    """Serve the API and pages on ``host:port`` and, on ``127.0.0.1:station_port``, the
    station's own screen (no login there; 0 or None: [api] station_screen_port)."""
    import uvicorn

    from web.app import create_app  # the API with the web pages on it

    if (certfile is None) != (keyfile is None):
        raise click.UsageError(_("give both --tls-cert and --tls-key, or neither"))
    api = app.settings.api
    screen_port = api.station_screen_port if station_port is None else station_port
    if screen_port and screen_port == port:
        raise click.UsageError(
            _("the station screen's port {port} is the API's own: give another").format(port=port)
        )
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
    web_app = create_app(app.settings, accel_redirect=accel_redirect)
    screen = _station_socket(screen_port)
    web_app.state.station_screen_port = screen.getsockname()[1] if screen else 0
    main = uvicorn.Server(
        uvicorn.Config(
            web_app,
            host=host,
            port=port,
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
            # Request lines carry no secrets (tokens go in headers), but access logs
            # belong to the reverse proxy; ours would only double them.
            access_log=False,
            # The reverse proxy's X-Forwarded-For and -Proto, believed from the proxies
            # the settings name only (never from FORWARDED_ALLOW_IPS in the environment).
            proxy_headers=True,
            forwarded_allow_ips=api.forwarded_allow_ips,
            server_header=False,
        )
    )
    if screen is None:
        main.run()
        return
    err.print(
        _("the station's own screen: http://127.0.0.1:{port}/station (this machine only)").format(
            port=web_app.state.station_screen_port
        ),
        markup=False,
    )
    # The same application, plain HTTP on loopback, no proxy headers: what arrives here
    # is a browser on this machine, whatever a forwarded header says.
    station = _follower(
        uvicorn.Config(
            web_app, access_log=False, proxy_headers=False, lifespan="off", server_header=False
        ),
        leader=main,
    )
    asyncio.run(_serve_both(main, station, screen))


def _follower(config: Any, leader: Any) -> Any:
    """A server that leaves the signals to ``leader`` and shuts down when it does."""
    import uvicorn

    class Follower(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def on_tick(self, counter: int) -> bool:
            return bool(leader.should_exit) or await super().on_tick(counter)

    return Follower(config)


async def _serve_both(main: Any, station: Any, screen: socket.socket) -> None:
    follower = asyncio.create_task(station.serve(sockets=[screen]))
    try:
        await main.serve()
    finally:
        station.should_exit = True
        await follower


def _station_socket(port: int) -> socket.socket | None:
    """The station screen's listening socket on 127.0.0.1 (bound here, before the
    servers start, so a port in use is a warning, not the end of `liuhen serve`)."""
    if not port:
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        err.print(
            _("warning: the station's own screen is not served: 127.0.0.1:{port}: {error}").format(
                port=port, error=exc.strerror or exc
            ),
            markup=False,
        )
        return None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


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
    @click.option(
        "--station-port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Port of the station's own screen, on 127.0.0.1 only, no login; 0: none "
        "[api.station_screen_port: 8001].",
    )
    @pass_ctx
    def serve(
        ctx: Any,
        host: str | None,
        port: int | None,
        certfile: Path | None,
        keyfile: Path | None,
        accel_redirect: str | None,
        station_port: int | None,
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
            station_port=station_port,
        )


def _path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None
