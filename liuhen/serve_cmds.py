"""`liuhen serve`: the HTTP API (api/) and the web pages on uvicorn, and the station's
own screen on a second, loopback-only listener.

With ``--workers N`` ([api] workers) above 1, N processes answer on the same port. This
process binds both listening sockets, then starts each worker as a new interpreter
(``python -m liuhen.serve_cmds``, the sockets inherited): it builds its own application,
catalog engine and store; nothing made here, no database connection, is shared. The
supervisor restarts a worker that dies, and on SIGTERM or SIGINT stops them all and
waits for them. Our own loop rather than uvicorn's ``Multiprocess`` supervisor: only one
worker (the first) serves the station screen's socket, each worker says when its
application has started (a worker that cannot start is not restarted forever), and a
worker whose supervisor is gone stops by itself. State the workers share (export jobs,
the audit page's custody check) is kept in files of the data directory
(api.filestate), not in a process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from config import LiuhenError, Settings
from config.errors import Reported
from config.i18n import _, language, set_language
from liuhen.output import err

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
STOP_WAIT_S = 30  # a worker still finishing requests after SIGTERM is killed after this
GIVE_UP_AFTER = 3  # a worker that dies this many times in a row before it ever started


@dataclass(frozen=True)
class ServeSpec:
    """What a server process needs to build its application and servers (picklable:
    it goes to each worker)."""

    settings: Settings
    language: str
    certfile: str | None
    keyfile: str | None
    accel_redirect: str | None
    screen_port: int  # the station screen's listener, bound (0: none)


def run_serve(
    app: Any,
    *,
    host: str,
    port: int,
    certfile: Path | None,
    keyfile: Path | None,
    accel_redirect: str | None = None,
    station_port: int | None = None,
    workers: int | None = None,
) -> None:
    """Serve the API and pages on ``host:port`` and, on ``127.0.0.1:station_port``, the
    station's own screen (no login there; 0 or None: [api] station_screen_port), in
    ``workers`` processes (None: [api] workers)."""
    if (certfile is None) != (keyfile is None):
        raise click.UsageError(_("give both --tls-cert and --tls-key, or neither"))
    api = app.settings.api
    screen_port = api.station_screen_port if station_port is None else station_port
    count = api.workers if workers is None else workers
    if screen_port and screen_port == port:
        raise click.UsageError(
            _("the station screen's port {port} is the API's own: give another").format(port=port)
        )
    app.ready_catalog()  # an out-of-date schema is said now, not at the first request
    app.catalog.dispose()  # the workers open their own connections
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
    main = _listen(host, port)
    screen = _station_socket(screen_port)
    spec = ServeSpec(
        settings=app.settings,
        language=language(),
        certfile=str(certfile) if certfile else None,
        keyfile=str(keyfile) if keyfile else None,
        accel_redirect=accel_redirect,
        screen_port=screen.getsockname()[1] if screen else 0,
    )
    if screen is not None:
        err.print(
            _(
                "the station's own screen: http://127.0.0.1:{port}/station (this machine only)"
            ).format(port=spec.screen_port),
            markup=False,
        )
    if count <= 1:
        serve_process(spec, main, screen)
        return
    err.print(_("{count} server processes answer on the port").format(count=count), markup=False)
    Supervisor(spec, count, main, screen).run()


def _listen(host: str, port: int) -> socket.socket:
    """The main listening socket, bound here once for every worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LiuhenError(
            _("cannot listen on {host}:{port}: {error}").format(
                host=host, port=port, error=exc.strerror or exc
            ),
            hint=_("another program may use that port: give another with --port"),
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_process(
    spec: ServeSpec,
    main: socket.socket,
    screen: socket.socket | None,
    *,
    ready: Any = None,
    parent: int | None = None,
) -> None:
    """One server process: its own application on the sockets given; ``ready`` (an
    event) is set once the application has started; ``parent``: stop when that process
    is gone (a worker never outlives its supervisor)."""
    import uvicorn

    from web.app import create_app  # the API with the web pages on it

    set_language(spec.language)
    web_app = create_app(spec.settings, accel_redirect=spec.accel_redirect)
    # Every worker knows the station screen's port (its guard tells that listener's
    # requests by it), whether or not this one serves it.
    web_app.state.station_screen_port = spec.screen_port
    server = _Main(
        uvicorn.Config(
            web_app,
            ssl_certfile=spec.certfile,
            ssl_keyfile=spec.keyfile,
            # Request lines carry no secrets (tokens go in headers), but access logs
            # belong to the reverse proxy; ours would only double them.
            access_log=False,
            # The reverse proxy's X-Forwarded-For and -Proto, believed from the proxies
            # the settings name only (never from FORWARDED_ALLOW_IPS in the environment).
            proxy_headers=True,
            forwarded_allow_ips=spec.settings.api.forwarded_allow_ips,
            server_header=False,
        ),
        parent=parent,
    )
    station = None
    if screen is not None:
        # The same application, plain HTTP on loopback, no proxy headers: what arrives
        # here is a browser on this machine, whatever a forwarded header says.
        station = _follower(
            uvicorn.Config(
                web_app, access_log=False, proxy_headers=False, lifespan="off", server_header=False
            ),
            leader=server,
        )
    asyncio.run(_serve_both(server, main, station, screen, ready))


class _Main:
    """uvicorn's server, also stopping when its supervisor (``parent``) is gone."""

    def __new__(cls, config: Any, parent: int | None) -> Any:
        import uvicorn

        class Main(uvicorn.Server):
            async def on_tick(self, counter: int) -> bool:
                if parent is not None and os.getppid() != parent:
                    return True
                return await super().on_tick(counter)

        return Main(config)


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


async def _serve_both(
    main: Any, sock: socket.socket, station: Any, screen: socket.socket | None, ready: Any
) -> None:
    """The main server and, once its application has started (lifespan: the catalog
    opened), the station screen's: a request there waits in the socket's queue until
    then rather than meet an application not started (a 500)."""
    serving = asyncio.create_task(main.serve(sockets=[sock]))
    while not main.started and not serving.done():
        await asyncio.sleep(0.05)
    if not main.started:
        await serving  # its exception, or the exit it asked for
        # uvicorn has logged why (a port in use, a start-up that failed).
        raise Reported("the server did not start", exit_code=3)
    if ready is not None:
        ready.set()
    if station is None or screen is None:
        await serving
        return
    follower = asyncio.create_task(station.serve(sockets=[screen]))
    try:
        await serving
    finally:
        station.should_exit = True
        await follower


def _worker_entry() -> None:
    """A worker process (``python -m liuhen.serve_cmds``): what to serve comes pickled
    on stdin from the supervisor, the sockets as inherited descriptors."""
    import pickle

    spec, main_fd, screen_fd, ready_fd, parent = pickle.load(sys.stdin.buffer)
    main = socket.socket(fileno=main_fd)
    screen = socket.socket(fileno=screen_fd) if screen_fd is not None else None
    try:
        serve_process(spec, main, screen, ready=_Ready(ready_fd), parent=parent)
    except Reported as exc:  # said already: this process's own end (liuhen.cli.main's)
        raise SystemExit(exc.exit_code) from None


class _Ready:
    """The worker's side of its readiness pipe: one byte once its application started."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def set(self) -> None:
        os.write(self.fd, b"1")
        os.close(self.fd)


@dataclass
class _Worker:
    slot: int
    process: subprocess.Popen[bytes]
    ready_fd: int  # the supervisor's end of the readiness pipe
    ready: bool = False
    failures: int = 0  # deaths in a row before it started

    def started(self) -> bool:
        """Whether the worker has said its application started (never blocks)."""
        if not self.ready:
            with contextlib.suppress(BlockingIOError):
                self.ready = os.read(self.ready_fd, 1) == b"1"
        return self.ready


class Supervisor:
    """N worker processes on the sockets bound here: each dead one restarted, all
    stopped on SIGTERM/SIGINT. Workers are plain child processes (``subprocess``, a new
    interpreter each), not ``multiprocessing``'s, which would leave its own helper
    process running past ours."""

    def __init__(
        self, spec: ServeSpec, count: int, main: socket.socket, screen: socket.socket | None
    ) -> None:
        self.spec, self.count, self.main, self.screen = spec, count, main, screen
        self.stop = threading.Event()
        self.workers: list[_Worker] = []

    def _launch(self, slot: int, failures: int = 0) -> _Worker:
        import pickle

        screen = self.screen if slot == 0 else None
        theirs_fd = screen.fileno() if screen is not None else None
        ours, theirs = os.pipe()
        os.set_blocking(ours, False)
        fds = (self.main.fileno(), theirs) + ((theirs_fd,) if theirs_fd is not None else ())
        try:
            # -P: nothing is imported from the folder `liuhen serve` was started in (with
            # -m, Python would look there first: a uvicorn.py in /tmp would run as us).
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", "liuhen.serve_cmds"],
                stdin=subprocess.PIPE,
                pass_fds=fds,
            )
        finally:
            os.close(theirs)
        assert process.stdin is not None
        with process.stdin:
            what = (self.spec, self.main.fileno(), theirs_fd, theirs, os.getpid())
            pickle.dump(what, process.stdin)
        return _Worker(slot, process, ours, failures=failures)

    def run(self) -> None:
        handled = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, lambda *_a: self.stop.set()) for sig in handled}
        try:
            self.workers = [self._launch(slot) for slot in range(self.count)]
            while not self.stop.wait(0.2):
                self._restart_dead()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _restart_dead(self) -> None:
        for i, w in enumerate(self.workers):
            started = w.started()
            code = w.process.poll()
            if code is None:
                if started:
                    w.failures = 0
                continue
            os.close(w.ready_fd)
            failures = 0 if started else w.failures + 1
            if failures >= GIVE_UP_AFTER:
                raise LiuhenError(
                    _("server process {slot} cannot start (exit status {code})").format(
                        slot=w.slot, code=code
                    ),
                    hint=_("the messages above say why"),
                )
            err.print(
                _("server process {pid} stopped (exit status {code}); starting another").format(
                    pid=w.process.pid, code=code
                ),
                markup=False,
            )
            if failures:
                time.sleep(min(5.0, 0.5 * failures))  # not a tight loop of failing starts
            self.workers[i] = self._launch(w.slot, failures)

    def _stop_all(self) -> None:
        for w in self.workers:
            if w.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for w in self.workers:
            try:
                w.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
            with contextlib.suppress(OSError):
                os.close(w.ready_fd)


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
    @click.option(
        "--workers",
        type=click.IntRange(1, 64),
        default=None,
        help="Server processes answering on the port (about one per core) [api.workers: 1].",
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
        workers: int | None,
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
            workers=workers,
        )


def _path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None


if __name__ == "__main__":
    _worker_entry()
