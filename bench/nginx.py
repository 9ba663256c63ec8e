"""nginx on a free port of this machine, for the benches and the tests that put it in
front of `liuhen serve` (bench/api.py: X-Accel-Redirect streaming, as docs/api.md
describes; tests/test_web_review_findings.py: a station's plain reverse proxy).

One runner: a configuration of its own in ``folder`` (pid, logs, temporary files),
nginx in the foreground as a child process, stopped when the block ends.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

CONF = """
daemon off;
user {user};
pid {dir}/nginx.pid;
error_log {dir}/error.log;
worker_processes 2;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  sendfile on;
  server {{
    listen {address}:{port};
{locations}
  }}
}}
"""


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_nginx(folder: Path, locations: str, *, address: str = "127.0.0.1") -> Iterator[str]:
    """nginx listening on ``address`` (a free port) with the server block's
    ``locations``; yields its base URL once it answers."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port(address)
    conf = folder / "nginx.conf"
    # Workers as this user: a test's store is readable by it alone (in production,
    # nginx's user needs read access to the store: docs/api.md). nginx ignores the
    # directive when not started as root.
    conf.write_text(
        CONF.format(
            dir=folder, address=address, port=port, locations=locations, user=getpass.getuser()
        )
    )
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(folder)])
    base = f"http://{address}:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/", timeout=2)  # any answer: nginx is listening
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = folder / "error.log"
                    raise RuntimeError(log.read_text() if log.exists() else "nginx") from None
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def proxy_location(upstream: str, headers: str = "proxy_set_header Host $host;") -> str:
    """``location /`` passing every request to ``upstream`` with ``headers``."""
    return f"    location / {{\n      proxy_pass {upstream};\n      {headers}\n    }}"
