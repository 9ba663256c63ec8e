"""District benchmark: throughput of the district simulation as stations and workers grow.

    python -m bench.district [--sizes 1x1,2x2,4x4] [--dockings 24] [--interval 0.05]
                             [--seed 1] [--json FILE] [--keep]

Runs the district simulation of tests/district/ (real `liuhen station watch` and `liuhen
worker` processes, a private PostgreSQL cluster, a moto S3 server process, synthetic
recorders docked at random stations) with chaos off, once per size ``SxW`` (S stations, W
workers). Recorders arrive faster than the district can take them (``--interval``, the
mean gap between dockings district-wide), so the figures are the district's capacity,
not the arrival rate. Each run ends with the invariant checker (it must report zero
violations; a run that does not is marked FAIL).

Per size it prints:

* offload: files/s and MB/s from the first recorder docked to the last one shown SAFE TO
  CLEAR (originals stored in S3, registered in PostgreSQL, custody events signed);
* all work: seconds from the first docking until the work queue is empty (every original
  probed, every derivative made and stored);
* time a docking waits: docked → SAFE_TO_CLEAR (catalog times, p50/p95), and placed →
  undocked (what the officer sees, including the station noticing the recorder);
* time a recording waits: stored → probed, and probed → its last derivative (queue wait
  plus the work itself; the queue keeps no claim time, so the two are not split).

Absolute figures depend on the machine (here 2 cores shared by every process: stations,
workers, PostgreSQL, moto and ffmpeg); compare sizes within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.district.simulation import SimConfig, SimResult, run_simulation


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        s, _, w = part.strip().lower().partition("x")
        sizes.append((int(s), int(w)))
    return sizes


def run_size(root: Path, stations: int, workers: int, args: argparse.Namespace) -> SimResult:
    cfg = SimConfig(
        root=root / f"{stations}x{workers}",
        stations=stations,
        workers=workers,
        dockings=args.dockings,
        chaos_events=0,
        long_pg_outage_s=0.0,
        docking_interval_s=args.interval,
        seed=args.seed,
        max_wall_s=args.max_wall,
        drain_timeout_s=args.max_wall,
        devices_per_station=args.devices,
    )
    return run_simulation(cfg)


def _w(res: SimResult, name: str, stat: str) -> str:
    value = res.waits.get(name, {}).get(stat)
    return f"{value:.2f}" if value is not None else "–"


def table(results: list[SimResult]) -> str:
    head = (
        "| stations × workers | dockings | files | MB | offload files/s | offload MB/s | "
        "all work done (s) | docked→safe p50 / p95 (s) | placed→undocked p50 / p95 (s) "
        "| stored→probed p50 / p95 (s) | probed→derived p50 / p95 (s) | check |"
    )
    rows = [head, "|" + "---|" * 12]
    for r in results:
        t = r.timings
        rows.append(
            f"| {r.config.stations} × {r.config.workers} | {r.dockings_placed} | "
            f"{r.files_placed} | {r.bytes_placed / 1e6:.1f} | "
            f"{t.get('files_per_s', float('nan')):.1f} | "
            f"{t.get('bytes_per_s', float('nan')) / 1e6:.2f} | "
            f"{t.get('all_derived_s', float('nan')):.1f} | "
            f"{_w(r, 'docked→SAFE_TO_CLEAR (catalog)', 'p50')} / "
            f"{_w(r, 'docked→SAFE_TO_CLEAR (catalog)', 'p95')} | "
            f"{_w(r, 'placed→undocked (officer)', 'p50')} / "
            f"{_w(r, 'placed→undocked (officer)', 'p95')} | "
            f"{_w(r, 'stored→probed', 'p50')} / {_w(r, 'stored→probed', 'p95')} | "
            f"{_w(r, 'probed→last derivative', 'p50')} / "
            f"{_w(r, 'probed→last derivative', 'p95')} | "
            f"{'PASS' if r.ok else 'FAIL'} |"
        )
    return "\n".join(rows)


def cpu_table(results: list[SimResult]) -> str:
    """Where the CPU went: seconds per component, and how busy the cores were."""
    names = ["stations", "workers", "postgresql", "s3 (moto)", "driver"]
    cores = os.cpu_count() or 1
    rows = [
        "| stations × workers | "
        + " | ".join(f"{n} CPU s" for n in names)
        + f" | total CPU s | wall s | cores busy (of {cores}) |",
        "|" + "---|" * (len(names) + 4),
    ]
    for r in results:
        wall = r.timings.get("cpu_wall_s", 0.0)  # processes started → stopped
        total = sum(r.cpu.values())
        rows.append(
            f"| {r.config.stations} × {r.config.workers} | "
            + " | ".join(f"{r.cpu.get(n, 0.0):.1f}" for n in names)
            + f" | {total:.1f} | {wall:.1f} | "
            f"{total / wall if wall else float('nan'):.2f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes",
        default="1x1,2x2,4x4,4x0",
        help="comma-separated SxW (stations x workers; 0 workers: offload only) [1x1,2x2,4x4,4x0]",
    )
    p.add_argument("--dockings", type=int, default=40, help="dockings per size [40]")
    p.add_argument(
        "--interval",
        type=float,
        default=0.05,
        help="mean seconds between dockings, district-wide [0.05]",
    )
    p.add_argument(
        "--devices", type=int, default=8, help="recorders (and dock slots) per station [8]"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-wall", type=float, default=900.0)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work folders (logs, data)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="liuhen-bench-district-"))
    results: list[SimResult] = []
    try:
        for stations, workers in parse_sizes(args.sizes):
            t0 = time.monotonic()
            res = run_size(root, stations, workers, args)
            results.append(res)
            print(
                f"{stations} × {workers}: {time.monotonic() - t0:.0f} s, "
                f"{'ok' if res.ok else 'FAILED'}",
                file=sys.stderr,
            )
            if not res.ok:
                print(res.summary(), file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    print()
    print(cpu_table(results))
    if args.json:
        data: list[dict[str, Any]] = [
            {
                "stations": r.config.stations,
                "workers": r.config.workers,
                "dockings": r.dockings_placed,
                "files": r.files_placed,
                "bytes": r.bytes_placed,
                "timings": r.timings,
                "waits": r.waits,
                "ok": r.ok,
            }
            for r in results
        ]
        args.json.write_text(json.dumps(data, indent=2))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
