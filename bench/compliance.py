"""Compliance benchmark: coverage of a district's year, on PostgreSQL (or SQLite).

    python -m bench.compliance [--url URL] [--small] [--recordings N] [--actions N]
                               [--officers N] [--units N] [--singles N] [--seed S]
                               [--json FILE] [--keep]

Builds a year of a district in a fresh catalog (default: a schema of its own in the
PostgreSQL at 127.0.0.1:5432, dropped afterwards unless ``--keep``): ``--officers`` (500)
in ``--units`` (10), one recorder each plus spares, 10% of them handed over mid-year;
``--actions`` (100,000) enforcement actions of two officers, 10–90 minutes in working
hours; ``--recordings`` (1,000,000): each officer's recordings of each action (a late
start, a gap or an early stop now and then; 0.5% with a doubtful capture time) and the
rest outside any action (patrols); a docking per recorder and week with its clock offset.
Rows go in by COPY (PostgreSQL) or executemany (SQLite); the build is not timed.

Then it times, each once, warm (a first untimed run loads the caches):

* coverage of every action of the year (``coverage_of``: set queries and sorted sweeps);
* the district summary (``summarize``, every unit: coverage of every action again, the
  tallies and the housekeeping), the target's figure (``all_and_summary_s``);
* one action's coverage (``action_coverage``), ``--singles`` (200) random actions: p50,
  p95, max.

Targets (issue 17): all actions and the district summary under 60 s together; one
action's p95 under 20 ms. ``--small`` (2,000 recordings, 200 actions, 20 officers) is the
CI smoke size; the tests make no timing assertion.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

from catalog import Catalog
from catalog.models import (
    ActionOfficer,
    Case,
    Device,
    DeviceAssignment,
    Docking,
    EnforcementAction,
    Officer,
    Recording,
    Station,
)
from compliance.coverage import Rules, action_coverage, action_select, coverage_of
from compliance.summary import Housekeeping, summarize

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
YEAR_START = datetime(2025, 12, 31, 16, 0, tzinfo=UTC)  # 2026-01-01 00:00 CST
TARGET_ALL_S = 60.0
TARGET_P95_MS = 20.0


@dataclass(frozen=True)
class Size:
    recordings: int
    actions: int
    officers: int
    units: int


SMALL = Size(2_000, 200, 20, 2)
FULL = Size(1_000_000, 100_000, 500, 10)


@dataclass
class Built:
    actions: int
    recordings: int
    build_s: float


class District:
    """Generates the rows of one district's year, deterministically from a seed."""

    def __init__(self, size: Size, seed: int) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.units = [f"徐汇区执法单位{u:02d}" for u in range(size.units)]
        self.n_devices = size.officers + max(1, size.officers // 10)

    def officers(self) -> list[dict[str, Any]]:
        return [
            {
                "id": i + 1,
                "number": f"{100000 + i}",
                "name": f"警员{i}",
                "unit": self.units[i % len(self.units)],
            }
            for i in range(self.size.officers)
        ]

    def devices(self) -> list[dict[str, Any]]:
        return [
            {
                "id": d + 1,
                "serial": f"D{d:06d}",
                "model": "DSJ-V9",
                "unit": self.units[d % len(self.units)],
                "registered": True,
                "created_at": YEAR_START,
            }
            for d in range(self.n_devices)
        ]

    def assignments(self) -> list[dict[str, Any]]:
        """Officer i carries device i; every tenth hands it to a spare's device mid-year."""
        rows = []
        mid = YEAR_START + timedelta(days=182)
        spare = self.size.officers
        for i in range(self.size.officers):
            officer = i + 1
            if i % 10 == 0 and spare < self.n_devices:
                rows.append(_assignment(i + 1, officer, YEAR_START, mid))
                rows.append(_assignment(spare + 1, officer, mid, None))
                spare += 1
            else:
                rows.append(_assignment(i + 1, officer, YEAR_START, None))
        return rows

    def device_at(self, officer_index: int, at: datetime) -> int:
        """The device an officer carries at an instant (as :meth:`assignments` hands them)."""
        if officer_index % 10 == 0 and at >= YEAR_START + timedelta(days=182):
            swapped = officer_index // 10
            if self.size.officers + swapped < self.n_devices:
                return self.size.officers + swapped + 1
        return officer_index + 1

    def actions(self) -> Iterator[tuple[dict[str, Any], list[int]]]:
        rng = self.rng
        n_off = self.size.officers
        for a in range(self.size.actions):
            first = rng.randrange(n_off)
            # The partner is from the same unit (officers are spread over units by i % units).
            partner = first + len(self.units) * rng.randrange(1, max(2, n_off // len(self.units)))
            partner %= n_off
            day = rng.randrange(365)
            start = YEAR_START + timedelta(days=day, hours=rng.uniform(1, 9))
            start = start.replace(microsecond=0)
            end = start + timedelta(minutes=rng.randint(10, 90))
            yield (
                {
                    "id": a + 1,
                    "case_id": a + 1,
                    "external_id": f"A-{a + 1}",
                    "start": start,
                    "end": end,
                    "place": "",
                    "created_at": YEAR_START,
                },
                sorted({first, partner}),
            )

    def segments(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """One officer's recordings of one action: usually whole, sometimes imperfect."""
        rng = self.rng
        roll = rng.random()
        s = start - timedelta(seconds=rng.randint(0, 60))
        e = end + timedelta(seconds=rng.randint(0, 60))
        if roll < 0.1:
            s = start + timedelta(seconds=rng.randint(10, 300))  # started late
        elif roll < 0.2:
            e = end - timedelta(seconds=rng.randint(10, 300))  # stopped early
        elif roll < 0.3:
            mid = start + (end - start) / 2
            return [(s, mid), (mid + timedelta(seconds=rng.randint(5, 120)), e)]
        elif roll < 0.35:
            return []
        # Recorders split long recordings into segments of at most 30 minutes.
        out, cursor = [], s
        while cursor < e:
            nxt = min(e, cursor + timedelta(minutes=30))
            out.append((cursor, nxt))
            cursor = nxt
        return out


def _assignment(device: int, officer: int, start: datetime, end: datetime | None) -> dict[str, Any]:
    return {
        "device_id": device,
        "officer_id": officer,
        "start": start,
        "end": end,
        "actor": "bench",
        "note": "",
        "created_at": YEAR_START,
    }


def build(catalog: Catalog, size: Size, seed: int) -> Built:
    t0 = time.perf_counter()
    d = District(size, seed)
    officers = d.officers()
    with catalog.transaction() as s:
        s.execute(insert(Station), [{"id": "bench", "unit": d.units[0], "created_at": YEAR_START}])
        s.execute(insert(Officer), officers)
        s.execute(insert(Device), d.devices())
        s.execute(insert(DeviceAssignment), d.assignments())
    actions, links, recs, cases = [], [], [], []
    n = 0
    for action, who in d.actions():
        actions.append(action)
        cases.append(
            {
                "id": action["case_id"],
                "number": f"沪徐罚〔2026〕{action['case_id']}号",
                "unit": officers[who[0]]["unit"],  # both officers are of one unit
                "title": "",
                "created_at": YEAR_START,
                "updated_at": YEAR_START,
            }
        )
        for i in who:
            links.append({"action_id": action["id"], "officer_id": i + 1})
            for start, end in d.segments(action["start"], action["end"]):
                n += 1
                recs.append(_recording(n, d.device_at(i, start), i + 1, start, end, d.rng))
    while n < size.recordings:  # patrols and everything else outside any action
        n += 1
        i = d.rng.randrange(size.officers)
        start = YEAR_START + timedelta(seconds=d.rng.randrange(365 * 86400))
        end = start + timedelta(minutes=d.rng.randint(1, 30))
        recs.append(_recording(n, d.device_at(i, start), i + 1, start, end, d.rng))
    with catalog.transaction() as s:
        s.execute(insert(Case), cases)
        s.execute(insert(EnforcementAction), actions)
        s.execute(insert(ActionOfficer), links)
        _load_recordings(s, catalog, recs)
        s.execute(insert(Docking), list(_dockings(d)))
    if catalog.is_postgres:
        with catalog.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return Built(len(actions), len(recs), time.perf_counter() - t0)


def _recording(
    n: int, device: int, officer: int, start: datetime, end: datetime, rng: random.Random
) -> dict[str, Any]:
    doubtful = rng.random() < 0.005
    return {
        "id": n,
        "sha256": f"{n:064x}",
        "sm3": f"{n:064x}",
        "size": 50_000_000,
        "object_key": f"sha256/{n:064x}",
        "state": "PROBED",
        "original_name": f"R{n}.MP4",
        "device_id": device,
        "officer_id": officer,
        "captured_at": start,
        "capture_end": end,
        "received_at": end + timedelta(hours=4),
        "flags": {"time": ["file name and embedded creation time differ by 600 s"]}
        if doubtful
        else {},
        "important": False,
    }


def _load_recordings(s: Any, catalog: Catalog, recs: list[dict[str, Any]]) -> None:
    if not catalog.is_postgres:
        for i in range(0, len(recs), 20_000):
            s.execute(insert(Recording), recs[i : i + 20_000])
        return
    cols = list(recs[0])
    raw = s.connection().connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY recordings ({', '.join(cols)}) FROM STDIN") as cp:
        for r in recs:
            cp.write_row([json.dumps(r[c]) if c == "flags" else r[c] for c in cols])


def _dockings(d: District) -> Iterator[dict[str, Any]]:
    n = 0
    for device in range(1, d.n_devices + 1):
        for week in range(52):
            n += 1
            at = YEAR_START + timedelta(weeks=week, hours=10)
            yield {
                "uid": f"dock-{n}",
                "station_id": "bench",
                "device_id": device,
                "slot": "1",
                "source_path": "/dock/1",
                "state": "CLEARED",
                "identity_source": "device-info",
                "identity_raw": {"clock_offset_s": d.rng.choice([0, 1, -2, 3, 400])},
                "started_at": at,
                "updated_at": at,
                "finished_at": at + timedelta(minutes=10),
                "bytes_total": 10_000_000_000,
                "problems": {},
            }


def measure(catalog: Catalog, singles: int, seed: int) -> dict[str, Any]:
    rules, house = Rules(), Housekeeping()
    start, end = YEAR_START, YEAR_START + timedelta(days=365)
    now = end
    with catalog.session() as s:
        coverage_of(s, action_select(), rules)  # warm-up: caches, plans
        t0 = time.perf_counter()
        found = coverage_of(s, action_select(), rules)
        all_s = time.perf_counter() - t0
        # The district summary computes every action's coverage itself, then tallies it
        # and adds the housekeeping: its time is the target's figure.
        t0 = time.perf_counter()
        summary = summarize(s, rules, house, unit=None, start=start, end=end, now=now)
        summary_s = time.perf_counter() - t0
        ids = [c.action.id for c in found]
        rng = random.Random(seed)
        picks = [rng.choice(ids) for _ in range(singles)] if ids else []
        for aid in picks[:10]:
            action_coverage(s, str(aid), rules)
        times = []
        for aid in picks:
            t0 = time.perf_counter()
            action_coverage(s, str(aid), rules)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)] if times else 0.0
    statuses: dict[str, int] = {}
    for c in found:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    return {
        "actions": len(found),
        "statuses": statuses,
        "all_actions_s": round(all_s, 2),
        "district_summary_s": round(summary_s, 2),
        "all_and_summary_s": round(summary_s, 2),
        "single_ms": {
            "p50": round(statistics.median(times), 2) if times else None,
            "p95": round(p95, 2),
            "max": round(max(times), 2) if times else None,
        },
        "district_actions": summary["district"]["actions"],
    }


def _fresh_pg(url: str) -> tuple[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", (admin, schema)


def run(url: str | None, size: Size, singles: int, seed: int, keep: bool) -> dict[str, Any]:
    cleanup = None
    if url is None:
        url, cleanup = _fresh_pg(DEFAULT_PG)
    catalog = Catalog(url)
    try:
        catalog.upgrade()
        built = build(catalog, size, seed)
        result = measure(catalog, singles, seed)
    finally:
        catalog.dispose()
        if cleanup is not None and not keep:
            admin, schema = cleanup
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    return {
        "database": catalog.dialect,
        "size": size.__dict__,
        "built": built.__dict__,
        **result,
        "targets": {"all_and_summary_s": TARGET_ALL_S, "single_p95_ms": TARGET_P95_MS},
        "met": result["all_and_summary_s"] < TARGET_ALL_S
        and result["single_ms"]["p95"] < TARGET_P95_MS,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--url", help=f"An empty catalog's URL (default: a fresh schema in {DEFAULT_PG})."
    )
    p.add_argument("--small", action="store_true", help="CI smoke size.")
    p.add_argument("--recordings", type=int)
    p.add_argument("--actions", type=int)
    p.add_argument("--officers", type=int)
    p.add_argument("--units", type=int)
    p.add_argument("--singles", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="Also write the result here.")
    p.add_argument("--keep", action="store_true", help="Keep the PostgreSQL schema.")
    args = p.parse_args(argv)
    base = SMALL if args.small else FULL
    size = Size(
        args.recordings or base.recordings,
        args.actions or base.actions,
        args.officers or base.officers,
        args.units or base.units,
    )
    result = run(args.url, size, args.singles, args.seed, args.keep)
    out = json.dumps(result, ensure_ascii=False, indent=2)
    print(out)
    if args.json:
        args.json.write_text(out + "\n", encoding="utf-8")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
