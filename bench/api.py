"""HTTP API benchmark: recording search latency on PostgreSQL, and range streaming
throughput against ``cat`` of the same file, through ``liuhen serve`` on loopback.

    python -m bench.api [--url PG_URL] [--recordings N] [--clients 50] [--searches N]
                        [--proxy-mb MB] [--via uvicorn|nginx] [--think-s S]
                        [--workers N] [--json FILE] [--keep]

Builds a district in a fresh catalog (default: a schema of its own in the PostgreSQL at
127.0.0.1:5432, dropped afterwards unless ``--keep``): 10 units, 500 officers, 600
recorders, ``--recordings`` (default 20,000; ``--recordings 1000000`` is the issue's
figure, by hand) over a year, 0.5% damaged, 1% with disagreeing times, 1% attached to
1,000 cases, 0.1% on legal hold; each recorder assigned to one officer for the first
half of the year and to another for the second (a recording's officer is its recorder's
at capture); rows go in by COPY (timed: ``build_s``; 1,000,000 take 75-135 s on the
development machine). One proxy of ``--proxy-mb`` MiB (default 64; 1024 is the issue's
1 GB) is stored in the local store.

Then ``liuhen serve`` runs as its own process (uvicorn, as in production; ``--workers
N`` is passed on to it when given) and:

* authentication: ``GET /api/v1/session`` (who am I) one request at a time, with an
  integration's API token and with an auditor's session: what every request pays first;
* search: a mix of queries (no filter, officer, recorder, unit, a station day, damaged,
  on hold, a case, page two by cursor, officer and day together) sent by one client
  (latency of the query itself) and by ``--clients`` concurrent clients each asking
  again the moment it is answered (a closed loop: the server under load), and with
  ``--think-s S`` also by ``--clients`` people pausing S seconds on average between
  searches (beside the closed loop, never instead of it): p50, p95, max in ms, each
  beside the server's own time (``..._server_ms``, its ``Server-Timing`` header), as
  an auditor (every unit: the widest search), and an officer's mix (no filter, a day,
  a month, damaged) within their own recordings (the access policy's own-recordings
  scope);
* streaming (``--via uvicorn``, or ``--via nginx``: nginx in front, the API answering
  with X-Accel-Redirect as docs/api.md describes): ``cat`` of the proxy's file to
  /dev/null (warm, the second of two runs), then the same bytes over HTTP as range
  requests: ``--clients`` clients (``curl`` processes) each fetch one slice of the file
  (``Range: bytes=a-b``); MiB/s of each and their ratio; also one client against one
  ``cat`` (``one_client``); with nginx, each beside nginx serving the same file as a
  plain static location (what loopback HTTP itself costs).

Targets (issue 15): search p95 < 50 ms at 1,000,000 recordings (judged on one client's
p95, the worse of the auditor's and the officer's mix); range streaming at least 80% of
``cat``. Tests run this at a small size and assert no timing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, text

from bench.nginx import running_nginx

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_SEARCH_P95_MS = 50.0
TARGET_STREAM_RATIO = 0.8
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
UNITS = [f"第{i}分局" for i in range(1, 11)]
N_OFFICERS, N_DEVICES, N_CASES = 500, 600, 1000
MIB = 1 << 20


@dataclass
class Built:
    recordings: int
    seconds: float


# -- building the district -------------------------------------------------------------------

HALF_YEAR = YEAR_START + timedelta(days=182)


def carrier(device: int, at: datetime) -> int:
    """The officer a recorder is assigned to at ``at``: one for the first half of the
    year, another for the second (what the officer's own-recordings scope follows)."""
    first = (device - 1) % N_OFFICERS + 1
    return first if at < HALF_YEAR else (first + N_OFFICERS // 2 - 1) % N_OFFICERS + 1


def _assignment_rows() -> list[dict[str, Any]]:
    rows = []
    for device in range(1, N_DEVICES + 1):
        rows.append(
            {
                "device_id": device,
                "officer_id": carrier(device, YEAR_START),
                "start": YEAR_START - timedelta(days=1),
                "end": HALF_YEAR,
            }
        )
        rows.append(
            {
                "device_id": device,
                "officer_id": carrier(device, HALF_YEAR),
                "start": HALF_YEAR,
                "end": None,
            }
        )
    return rows


def _recording_rows(n: int, rng: random.Random) -> Any:
    span = 365 * 86400
    for i in range(1, n + 1):
        start = YEAR_START + timedelta(seconds=rng.randrange(span))
        roll = rng.random()
        flags = (
            {"damaged": "the media data ends early"}
            if roll < 0.005
            else ({"time": ["file name and embedded time differ"]} if roll < 0.015 else {})
        )
        device = rng.randrange(1, N_DEVICES + 1)
        yield {
            "id": i,
            "sha256": f"{i:064x}",
            "sm3": f"{i:064x}",
            "size": 50_000_000,
            "object_key": f"sha256/{i:064x}",
            "state": "DERIVED",
            "original_name": f"R{i}.MP4",
            "device_id": device,
            "officer_id": carrier(device, start),
            "captured_at": start,
            "capture_end": start + timedelta(minutes=5),
            "received_at": start + timedelta(hours=8),
            "flags": flags,
            "important": False,
        }


def build(catalog: Any, n: int, seed: int) -> Built:
    from catalog.models import Case as CaseRow
    from catalog.models import (
        CaseRecording,
        Device,
        DeviceAssignment,
        LegalHold,
        Officer,
        Recording,
    )

    rng = random.Random(seed)
    t0 = time.perf_counter()
    with catalog.transaction() as s:
        s.execute(
            insert(Officer),
            [
                {"id": i, "number": f"{100000 + i}", "name": "", "unit": UNITS[i % 10]}
                for i in range(1, N_OFFICERS + 1)
            ],
        )
        s.execute(
            insert(Device),
            [
                {"id": i, "serial": f"DSJ{i:06d}", "unit": UNITS[i % 10], "registered": True}
                for i in range(1, N_DEVICES + 1)
            ],
        )
        s.execute(insert(DeviceAssignment), _assignment_rows())
        s.execute(
            insert(CaseRow),
            [
                {"id": i, "number": f"沪第{i}号", "unit": UNITS[i % 10]}
                for i in range(1, N_CASES + 1)
            ],
        )
        cols = list(next(_recording_rows(1, random.Random(0))))
        raw = s.connection().connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY recordings ({', '.join(cols)}) FROM STDIN") as cp:
            for row in _recording_rows(n, rng):
                cp.write_row([json.dumps(row[c]) if c == "flags" else row[c] for c in cols])
        picks = rng.sample(range(1, n + 1), max(1, n // 100))
        s.execute(
            insert(CaseRecording),
            [
                {"case_id": rng.randrange(1, N_CASES + 1), "recording_id": r, "method": "manual"}
                for r in picks
            ],
        )
        s.execute(
            insert(LegalHold),
            [
                {"recording_id": r, "reason": "bench", "placed_by": "bench"}
                for r in rng.sample(range(1, n + 1), max(1, n // 1000))
            ],
        )
        s.execute(text(f"SELECT setval('recordings_id_seq', {n})"))
        assert Recording.__tablename__ == "recordings"
    # VACUUM as autovacuum would have by the time anyone searches a district this size:
    # it marks the pages all-visible, which index-only scans (migration 0011) rely on.
    with catalog.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return Built(n, time.perf_counter() - t0)


# -- the server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    data_dir: Path, url: str, *, accel: bool = False, workers: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``liuhen serve`` on a free loopback port, as its own process (``accel``: with
    ``--accel-redirect /_liuhen_store/``, for nginx in front; ``workers``: passed as
    ``--workers N`` when given, else the server's own default)."""
    port = _free_port()
    env = {**os.environ, "LIUHEN_HOME": str(data_dir), "LIUHEN_CATALOG_URL": url}
    liuhen = Path(sys.executable).with_name("liuhen")
    proc = subprocess.Popen(
        [str(liuhen), "serve", "--port", str(port)]
        + (["--accel-redirect", "/_liuhen_store/"] if accel else [])
        + (["--workers", str(workers)] if workers is not None else []),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/api/v1/openapi.json", timeout=2)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("liuhen serve did not start")


@contextmanager
def nginx_in_front(
    upstream: str, store_root: str, folder: Path, *, extra: str = ""
) -> Iterator[str]:
    """nginx on a free loopback port (bench/nginx.py): /api/ proxied to ``upstream``, and
    the directory store as the internal location the API's X-Accel-Redirect names, as
    docs/api.md describes; ``extra``: more locations."""
    locations = f"""    location /api/ {{
      proxy_pass {upstream};
      proxy_set_header Host $host;
      proxy_buffering off;
    }}
    location /_liuhen_store/ {{
      internal;
      alias {store_root}/;
    }}
    {extra}"""
    with running_nginx(folder, locations) as base:
        yield base


# -- measuring ---------------------------------------------------------------------------


def search_mix(n: int, rng: random.Random) -> list[dict[str, Any]]:
    day = YEAR_START + timedelta(days=rng.randrange(360))
    on = day.astimezone(UTC).date().isoformat()
    nxt = (day + timedelta(days=1)).date().isoformat()
    return [
        {},
        {"officer": f"{100000 + rng.randrange(1, N_OFFICERS + 1)}"},
        {"device": f"DSJ{rng.randrange(1, N_DEVICES + 1):06d}"},
        {"unit": rng.choice(UNITS)},
        {"from": on, "to": nxt},
        {"flag": "damaged"},
        {"flag": "on_hold"},
        {"case": f"沪第{rng.randrange(1, N_CASES + 1)}号"},
        {"officer": f"{100000 + rng.randrange(1, N_OFFICERS + 1)}", "from": on, "to": nxt},
        {"state": "DERIVED", "flag": "time_disagreement"},
    ]


def officer_mix(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """What an officer asks of their own recordings (the policy's own-recordings scope)."""
    day = YEAR_START + timedelta(days=rng.randrange(360))
    on, nxt = day.date().isoformat(), (day + timedelta(days=1)).date().isoformat()
    month = (day + timedelta(days=30)).date().isoformat()
    return [{}, {"from": on, "to": nxt}, {"from": on, "to": month}, {"flag": "damaged"}, {}]


def _percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50": round(statistics.median(ms), 2),
        "p95": round(ms[max(0, int(len(ms) * 0.95) - 1)], 2),
        "max": round(ms[-1], 2),
        "n": len(ms),
    }


@dataclass(frozen=True)
class Timed:
    """One request's time: as the client saw it (the HTTP exchange over loopback
    included), and as the server saw it (its ``Server-Timing: app;dur=`` header,
    api/timing.py: from receiving the request to starting the answer)."""

    client_ms: float
    server_ms: float


def timed_of(client_ms: float, response: httpx.Response) -> Timed:
    from api.timing import server_ms

    server = server_ms(response.headers.get("server-timing"))
    if server is None:
        raise RuntimeError(f"{response.url}: no Server-Timing header")
    return Timed(client_ms, server)


def timings(name: str, times: list[Timed]) -> dict[str, dict[str, float]]:
    """``{name}_ms`` (the client's) and ``{name}_server_ms`` (the server's) percentiles."""
    return {
        f"{name}_ms": _percentiles([t.client_ms for t in times]),
        f"{name}_server_ms": _percentiles([t.server_ms for t in times]),
    }


def _one_search(http: httpx.Client, params: dict[str, Any]) -> Timed:
    t0 = time.perf_counter()
    r = http.get("/api/v1/recordings", params=params)
    first = r.json()
    if r.status_code != 200:
        raise RuntimeError(f"search {params}: {r.status_code} {r.text[:300]}")
    took = timed_of((time.perf_counter() - t0) * 1000, r)
    if first["next_cursor"]:  # page two, by cursor: what paging costs
        t1 = time.perf_counter()
        r = http.get("/api/v1/recordings", params={**params, "cursor": first["next_cursor"]})
        r.raise_for_status()
        more = timed_of((time.perf_counter() - t1) * 1000, r)
        # Per request: two were made.
        return Timed((took.client_ms + more.client_ms) / 2, (took.server_ms + more.server_ms) / 2)
    return took


def measure_search(
    base: str,
    token: str,
    searches: int,
    clients: int,
    seed: int,
    mix: Any = search_mix,
    think_s: float = 0.0,
) -> dict[str, Any]:
    rng = random.Random(seed)
    queries: list[dict[str, Any]] = []
    while len(queries) < searches:
        queries += mix(0, rng)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for q in queries[:10]:
            _one_search(http, q)  # warm-up: plans, caches, connections
        single = [_one_search(http, q) for q in queries]

    local = threading.local()
    opened: list[httpx.Client] = []

    def run(q: dict[str, Any]) -> Timed:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, headers=headers, timeout=120)
            opened.append(local.http)
        return _one_search(local.http, q)

    try:
        with ThreadPoolExecutor(clients) as pool:
            loaded = list(pool.map(run, queries * 2))
    finally:
        for http in opened:
            http.close()
    result = {**timings("one_client", single), **timings(f"{clients}_clients", loaded)}
    if think_s > 0:
        paced = _people(base, headers, queries, clients, think_s)
        result.update(timings(f"{clients}_clients_{think_s:g}s_think", paced))
    return result


def _people(
    base: str,
    headers: dict[str, str],
    queries: list[dict[str, Any]],
    clients: int,
    think_s: float,
) -> list[Timed]:
    """``clients`` people at once, each searching one query after another with a pause
    between them (exponential, mean ``think_s``: reading the results before the next
    search). The closed loop has no pause: each client asks again the moment it is
    answered, far more than fifty people using the system do."""

    def person(index: int) -> list[Timed]:
        rng = random.Random(index)
        times: list[Timed] = []
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            for q in queries[index::clients]:
                time.sleep(rng.expovariate(1 / think_s))
                times.append(_one_search(http, q))
        return times

    with ThreadPoolExecutor(clients) as pool:
        return [t for got in pool.map(person, range(clients)) for t in got]


def measure_auth(base: str, secrets: dict[str, str], requests: int) -> dict[str, Any]:
    """``GET /api/v1/session`` (who am I: authentication and nothing else) one request
    at a time, with each kind of credential: what every request pays before its work."""
    found = {}
    for kind, secret in secrets.items():
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            ms: list[Timed] = []
            for i in range(requests + 10):
                t0 = time.perf_counter()
                r = http.get("/api/v1/session")
                r.raise_for_status()
                if i >= 10:  # the first ten warm the connection and the server's caches
                    ms.append(timed_of((time.perf_counter() - t0) * 1000, r))
        found.update(timings(kind, ms))
    return found


def _cat_all(path: Path, clients: int) -> float:
    """Seconds for ``clients`` concurrent ``cat`` of the file (warm: the second run)."""
    seconds = 0.0
    for _ in range(2):  # the first run fills the page cache, as the server's reads will
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(["cat", str(path)], stdout=subprocess.DEVNULL) for _ in range(clients)
        ]
        for proc in procs:
            proc.wait()
        seconds = time.perf_counter() - t0
    return seconds


def _curl_range(url: str, token: str, start: int) -> int:
    """Bytes received for ``Range: bytes=start-`` (curl, as a player or download manager
    fetches: a Python client would measure its own parsing, not the server)."""
    done = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "-H",
            f"Authorization: Bearer {token}",
            "-r",
            f"{start}-",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    code, got = done.stdout.split()
    if code != "206":
        raise RuntimeError(f"range request answered {code}")
    return int(got)


def measure_streaming(
    base: str, token: str, path: Path, rec_id: int, clients: int, *, url_path: str = ""
) -> dict[str, Any]:
    """``clients`` concurrent range requests, each from its own offset to the end (the
    first half of the file spread over the clients), against as many concurrent ``cat``
    of the whole file: MiB/s of each, and their ratio."""
    size = path.stat().st_size
    url = base + (url_path or f"/api/v1/recordings/{rec_id}/media/proxy")
    starts = [k * (size // (2 * clients)) for k in range(clients)]
    cat_s = _cat_all(path, clients)
    _curl_range(url, token, max(size - MIB, 0))  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(lambda start: _curl_range(url, token, start), starts))
    http_s = time.perf_counter() - t0
    if total != sum(size - start for start in starts):
        raise RuntimeError(f"streamed {total} bytes, not what was asked")
    cat_mbs, http_mbs = clients * size / MIB / cat_s, total / MIB / http_s
    return {
        "proxy_mib": round(size / MIB, 1),
        "clients": clients,
        "cat_mib_s": round(cat_mbs, 1),
        "http_ranges_mib_s": round(http_mbs, 1),
        "ratio": round(http_mbs / cat_mbs, 3),
    }


# -- the whole run --------------------------------------------------------------------------


def _fresh_pg(url: str) -> tuple[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", (admin, schema)


@dataclass
class Prepared:
    built: Built
    proxy: Path  # the proxy's file in the directory store
    rec_id: int  # the recording whose proxy it is
    token: str  # an auditor's session secret, as Bearer (API tokens open no evidence)
    officer_session: str  # an officer's session secret (sees their own recordings)
    officer_number: str
    api_token: str  # an integration's API token (a case-management system): its auth cost


def _prepare(data_dir: Path, url: str, recordings: int, proxy_mb: int, seed: int) -> Prepared:
    """The station (settings, key, catalog, store), the district, one proxy, an
    auditor's session and an officer's session."""
    import secrets
    from dataclasses import replace

    from access.accounts import create_user, principal_of
    from access.roles import Role
    from access.sessions import issue_token, open_session
    from catalog.media import DerivedObject, record_derivative
    from catalog.models import Recording
    from config import load_settings
    from liuhen.app import App, initialize
    from storage import Digest

    settings = load_settings(data_dir=data_dir, environ={"LIUHEN_CATALOG_URL": url})
    app = App(replace(settings))
    initialize(app)
    built = build(app.catalog, recordings, seed)
    source = data_dir / "proxy.mp4"
    with source.open("wb") as f:
        block = random.Random(seed).randbytes(MIB)
        for _ in range(proxy_mb):
            f.write(block)
    sha = hashlib.sha256()
    with source.open("rb") as f:
        while chunk := f.read(MIB * 8):
            sha.update(chunk)
    digest = Digest("sha256", sha.hexdigest())
    key = f"sha256/{digest.hex}"
    app.store.put_file(key, source, expected=digest, size=source.stat().st_size)
    with app.catalog.transaction() as s:
        rec = s.get(Recording, 1)
        assert rec is not None
        record_derivative(
            s,
            app.signer,
            rec,
            DerivedObject(
                "proxy",
                digest.hex,
                digest.hex,
                source.stat().st_size,
                key,
                "reencode",
                ["ffmpeg", "out.mp4"],
                "bench",
                60.0,
            ),
            "bench",
        )
        # A logged-in auditor (API tokens open no evidence): its session secret as Bearer.
        auditor, _pw = create_user(
            s,
            login="bench",
            roles=[Role.AUDITOR],
            actor="bench",
            policy=app.settings.access,
            password=secrets.token_urlsafe(24) + "-Aa1",
        )
        principal = principal_of(s, auditor, via="session", policy=app.settings.access)
        token = open_session(s, principal, source="bench", policy=app.settings.access)
        api_token = issue_token(
            s,
            name="bench-cms",
            role=Role.ARCHIVIST,
            unit=UNITS[0],
            expires_at=datetime.now(UTC) + timedelta(hours=6),
            created_by="bench",
            policy=app.settings.access,
        )
        number = f"{100000 + carrier(1, YEAR_START)}"
        user, _none = create_user(
            s,
            login="bench-officer",
            unit=UNITS[1],
            officer_number=number,
            roles=[Role.OFFICER],
            actor="bench",
            policy=app.settings.access,
            password="Qz7#river-lamp-2026",
        )
        principal = principal_of(s, user, via="session", policy=app.settings.access)
        officer_session = open_session(s, principal, policy=app.settings.access)
    store_path = Path(app.settings.store_url.removeprefix("file://")) / key
    app.close()
    return Prepared(built, store_path, 1, token, officer_session, number, api_token)


def run(
    url: str | None,
    *,
    recordings: int,
    clients: int,
    searches: int,
    proxy_mb: int,
    seed: int = 7,
    keep: bool = False,
    via: str = "uvicorn",
    think_s: float = 0.0,
    workers: int | None = None,
) -> dict[str, Any]:
    cleanup = None
    if url is None:
        url, cleanup = _fresh_pg(DEFAULT_PG)
    proc = None
    try:
        with tempfile.TemporaryDirectory(prefix="liuhen-bench-api-") as tmp:
            data_dir = Path(tmp)
            prep = _prepare(data_dir, url, recordings, proxy_mb, seed)
            built, proxy, rec_id, token = prep.built, prep.proxy, prep.rec_id, prep.token
            accel = via == "nginx"
            proc, base = start_server(data_dir, url, accel=accel, workers=workers)
            # What every request pays first: an integration's token, a person's session.
            auth = measure_auth(base, {"token": prep.api_token, "session": token}, searches)
            search = measure_search(base, token, searches, clients, seed, think_s=think_s)
            own = measure_search(
                base,
                prep.officer_session,
                searches,
                clients,
                seed,
                mix=officer_mix,
                think_s=think_s,
            )
            if accel:  # the bytes from nginx, after the API allowed and audited them
                store_root = str(proxy.parents[1])  # the proxy's key is sha256/<hex>
                # A public location serving the same file without the API: the baseline
                # of what loopback HTTP itself costs (bench only, never in production).
                static = f"location /_static/ {{ alias {store_root}/; }}"
                with nginx_in_front(base, store_root, data_dir, extra=static) as front:
                    static_path = f"/_static/sha256/{proxy.name}"
                    streaming = measure_streaming(front, token, proxy, rec_id, clients)
                    plain = measure_streaming(
                        front, token, proxy, rec_id, clients, url_path=static_path
                    )
                    # One player against one `cat`: the 50 clients' figure is bounded
                    # by the two cores, one stream by the path a byte takes.
                    one = measure_streaming(front, token, proxy, rec_id, 1)
                    one_plain = measure_streaming(
                        front, token, proxy, rec_id, 1, url_path=static_path
                    )
                for figures, baseline in ((streaming, plain), (one, one_plain)):
                    figures["nginx_static_mib_s"] = baseline["http_ranges_mib_s"]
                    figures["ratio_to_nginx_static"] = round(
                        figures["http_ranges_mib_s"] / baseline["http_ranges_mib_s"], 3
                    )
                streaming["one_client"] = one
            else:
                streaming = measure_streaming(base, token, proxy, rec_id, clients)
                streaming["one_client"] = measure_streaming(base, token, proxy, rec_id, 1)
            streaming["via"] = via
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if cleanup is not None and not keep:
            admin, schema = cleanup
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    p95 = max(search["one_client_ms"]["p95"], own["one_client_ms"]["p95"])
    return {
        "recordings": built.recordings,
        "workers": workers,
        "build_s": round(built.seconds, 1),
        "auth": auth,
        "search": search,
        "officer_search": own,
        "streaming": streaming,
        "targets": {"search_p95_ms": TARGET_SEARCH_P95_MS, "stream_ratio": TARGET_STREAM_RATIO},
        "ratios": {
            "search_p95_of_target": round(p95 / TARGET_SEARCH_P95_MS, 3),
            "stream_of_cat": streaming["ratio"],
        },
        "met": p95 < TARGET_SEARCH_P95_MS and streaming["ratio"] >= TARGET_STREAM_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--url", help=f"An empty PostgreSQL catalog (default: a schema in {DEFAULT_PG})."
    )
    p.add_argument("--recordings", type=int, default=20_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--searches", type=int, default=200, help="Searches per measurement.")
    p.add_argument("--proxy-mb", type=int, default=64)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--via",
        choices=["uvicorn", "nginx"],
        default="uvicorn",
        help="Stream from liuhen serve itself, or from nginx in front of it (X-Accel-Redirect).",
    )
    p.add_argument(
        "--think-s",
        type=float,
        default=0.0,
        help=(
            "Also measure --clients people pausing this long on average between searches "
            "(beside the closed loop, which is always measured)."
        ),
    )
    p.add_argument(
        "--workers",
        type=int,
        help="Pass --workers N to liuhen serve (default: not passed, its own default).",
    )
    p.add_argument("--json", type=Path, help="Also write the figures to this file.")
    p.add_argument("--keep", action="store_true", help="Keep the bench schema.")
    args = p.parse_args(argv)
    result = run(
        args.url,
        recordings=args.recordings,
        clients=args.clients,
        searches=args.searches,
        proxy_mb=args.proxy_mb,
        seed=args.seed,
        keep=args.keep,
        via=args.via,
        think_s=args.think_s,
        workers=args.workers,
    )
    text_ = json.dumps(result, indent=2, ensure_ascii=False)
    print(text_)
    if args.json:
        args.json.write_text(text_ + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
