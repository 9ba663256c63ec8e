"""Web pages benchmark: how long `liuhen serve` takes to answer the recordings search
page and a recording's page, on PostgreSQL, one client and ``--clients`` at once.

    python -m bench.web [--url PG_URL] [--reuse] [--recordings N] [--clients 20]
                        [--requests N] [--think-s S] [--workers N] [--json FILE] [--keep]

The district is bench/api.py's (:func:`bench.api.build`: 10 units, 500 officers, 600
recorders, ``--recordings`` over a year, damaged, disagreeing times, cases, holds; rows
by COPY, not timed), in a schema of its own in the PostgreSQL at 127.0.0.1:5432, dropped
afterwards unless ``--keep``. ``--url URL --reuse`` measures a catalog already built
(the schema a ``--keep`` run of this bench or bench/api printed): its recordings are
kept, only the bench's auditor is added.

Then ``liuhen serve`` runs as its own process (uvicorn, as in production; ``--workers
N`` is passed on to it when given) and an
auditor, logged in through the login form (the pages' cookie session), asks:

* the search page ``/recordings`` with bench/api.py's mix of filters (none, officer,
  recorder, unit, a day, damaged, on hold, a case, officer and day, state and flag),
  and its second page by the cursor the first page links to;
* a recording's page ``/recordings/{id}`` for random recordings (each view is audited:
  a signed custody event written before the page is answered, as in production).

Each request is timed on the client over loopback (the HTTP exchange included: what a
browser on the same network waits for the HTML), one client then ``--clients`` clients
at once, each asking again the moment it is answered (a closed loop, far above what
people do), and with ``--think-s S`` also ``--clients`` browsers that pause S seconds on
average between pages (a person looking at a page before the next click): p50, p95,
max in ms. Beside each figure (``..._ms``) is the server's own (``..._server_ms``):
the ``Server-Timing: app;dur=`` header of each answer (api/timing.py), from the request
reaching the application to its answer starting; the difference is the loopback
exchange, the client, and the wait in uvicorn before the application sees the request.
The issue's figures are at ``--recordings 1000000``, by hand; tests/test_web_bench.py
runs it small and asserts no timing.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text

from bench.api import (
    DEFAULT_PG,
    Timed,
    _fresh_pg,
    build,
    search_mix,
    start_server,
    timed_of,
    timings,
)

LOGIN, PASSWORD = "bench-auditor", "Bench-web-2026-pass"
NEXT_PAGE = re.compile(r'href="(/recordings\?[^"]*cursor=[^"]*)"')


def _prepare(data_dir: Path, url: str, recordings: int, seed: int, reuse: bool) -> int:
    """The station's settings, key and catalog; the district (unless ``reuse`` and it is
    there); the bench's auditor. Returns how many recordings the catalog holds."""
    from access.accounts import create_user
    from access.roles import Role
    from catalog.models import Recording
    from config import load_settings
    from liuhen.app import App, initialize

    settings = load_settings(data_dir=data_dir, environ={"LIUHEN_CATALOG_URL": url})
    app = App(settings)
    try:
        initialize(app)
        with app.catalog.session() as s:
            held = int(s.scalar(select(func.count()).select_from(Recording)) or 0)
        if not (reuse and held):
            held = build(app.catalog, recordings, seed).recordings
        with app.catalog.transaction() as s:
            create_user(
                s,
                login=f"{LOGIN}-{data_dir.name[-8:]}",
                display_name="bench",
                unit="",
                officer_number=None,
                roles=[Role.AUDITOR],
                actor="bench",
                policy=app.settings.access,
                password=PASSWORD,
            )
    finally:
        app.close()
    return held


def _logged_in(base: str, login: str) -> httpx.Client:
    http = httpx.Client(base_url=base, timeout=120, follow_redirects=False)
    r = http.post("/login", data={"login": login, "password": PASSWORD, "next": "/recordings"})
    if r.status_code != 303:
        raise RuntimeError(f"login as {login}: {r.status_code} {r.text[:300]}")
    return http


def _get(http: httpx.Client, path: str, params: dict[str, Any] | None = None) -> tuple[Timed, str]:
    t0 = time.perf_counter()
    r = http.get(path, params=params)
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{path} {params or ''}: {r.status_code} {r.text[:300]}")
    return timed_of(ms, r), r.text


def search_page(http: httpx.Client, params: dict[str, Any]) -> list[Timed]:
    """The search page, and its second page when it links one (keyset paging)."""
    ms, html = _get(http, "/recordings", params)
    found = NEXT_PAGE.search(html)
    if not found:
        return [ms]
    more, _ = _get(http, found.group(1).replace("&amp;", "&"))
    return [ms, more]


def recording_page(http: httpx.Client, rec_id: int) -> list[Timed]:
    ms, _ = _get(http, f"/recordings/{rec_id}")
    return [ms]


def _search_job(params: dict[str, Any], http: httpx.Client) -> list[Timed]:
    return search_page(http, params)


def _recording_job(rec_id: int, http: httpx.Client) -> list[Timed]:
    return recording_page(http, rec_id)


Job = Callable[[httpx.Client], list[Timed]]


def _measure(
    base: str,
    login: str,
    jobs: Sequence[Job],
    clients: int,
    think_s: float = 0.0,
) -> dict[str, Any]:
    http = _logged_in(base, login)
    try:
        for job in jobs[:5]:
            job(http)  # warm-up: plans, caches, connections
        single = [ms for job in jobs for ms in job(http)]
    finally:
        http.close()
    local = threading.local()
    opened: list[httpx.Client] = []

    def run(job: Job) -> list[Timed]:
        if not hasattr(local, "http"):
            local.http = _logged_in(base, login)
            opened.append(local.http)
        return job(local.http)

    try:
        with ThreadPoolExecutor(clients) as pool:
            loaded = [ms for got in pool.map(run, [*jobs, *jobs]) for ms in got]
    finally:
        for http in opened:
            http.close()
    result = {**timings("one_client", single), **timings(f"{clients}_clients", loaded)}
    if think_s > 0:
        paced = _browsers(base, login, jobs, clients, think_s)
        result.update(timings(f"{clients}_browsers_{think_s:g}s_think", paced))
    return result


def _browsers(
    base: str,
    login: str,
    jobs: Sequence[Job],
    browsers: int,
    think_s: float,
) -> list[Timed]:
    """``browsers`` people at once, each with their own session, opening pages one after
    another with a pause between them (exponential, mean ``think_s``: the time to look at
    a page before the next click). The closed loop above has no pause at all: each
    client asks again the moment it is answered, far more than a person does."""

    def person(index: int) -> list[Timed]:
        rng = random.Random(index)
        http = _logged_in(base, login)
        times: list[Timed] = []
        try:
            for job in jobs[index::browsers]:
                time.sleep(rng.expovariate(1 / think_s))
                times += job(http)
        finally:
            http.close()
        return times

    with ThreadPoolExecutor(browsers) as pool:
        return [ms for got in pool.map(person, range(browsers)) for ms in got]


def run(
    url: str | None,
    *,
    recordings: int,
    clients: int,
    requests: int,
    seed: int = 7,
    keep: bool = False,
    reuse: bool = False,
    think_s: float = 0.0,
    workers: int | None = None,
) -> dict[str, Any]:
    cleanup = None
    if url is None:
        url, cleanup = _fresh_pg(DEFAULT_PG)
    proc = None
    try:
        with tempfile.TemporaryDirectory(prefix="liuhen-bench-web-") as tmp:
            data_dir = Path(tmp)
            t0 = time.perf_counter()
            held = _prepare(data_dir, url, recordings, seed, reuse)
            prepared_s = time.perf_counter() - t0
            login = f"{LOGIN}-{data_dir.name[-8:]}"
            proc, base = start_server(data_dir, url, workers=workers)
            rng = random.Random(seed)
            mix = [q for _ in range(max(1, requests // 10)) for q in search_mix(0, rng)]
            searches = [partial(_search_job, q) for q in mix]
            ids = [rng.randrange(1, held + 1) for _ in range(requests)]
            pages = [partial(_recording_job, i) for i in ids]
            search = _measure(base, login, searches, clients, think_s)
            recording = _measure(base, login, pages, clients, think_s)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if cleanup is not None:
            admin, schema = cleanup
            if keep:
                print(f"bench.web: kept the catalog: --url '{url}' --reuse", file=sys.stderr)
            else:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    return {
        "catalog": url if keep or reuse else None,
        "recordings": held,
        "prepare_s": round(prepared_s, 1),
        "clients": clients,
        "workers": workers,
        "search_page": search,
        "recording_page": recording,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", help=f"A PostgreSQL catalog (default: a new schema in {DEFAULT_PG}).")
    p.add_argument(
        "--reuse", action="store_true", help="The catalog at --url is built: measure it as is."
    )
    p.add_argument("--recordings", type=int, default=20_000)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=200, help="Requests of each page.")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, help="Also write the figures to this file.")
    p.add_argument("--keep", action="store_true", help="Keep the bench schema (to --reuse it).")
    p.add_argument(
        "--think-s",
        type=float,
        default=0.0,
        help="Also measure --clients browsers pausing this long on average between pages.",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="Pass --workers N to liuhen serve (default: not passed, its own default).",
    )
    args = p.parse_args(argv)
    result = run(
        args.url,
        recordings=args.recordings,
        clients=args.clients,
        requests=args.requests,
        seed=args.seed,
        keep=args.keep,
        reuse=args.reuse,
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
