"""``data/metadata/handover.csv``: the hand-over list (移交清单).

One row per payload file (``path,bytes,sha256,sm3``), sorted by path, then a totals row
whose first column is ``TOTAL``: total bytes, then the number of files. Paths always
start with ``data/``, so the totals row cannot be mistaken for a file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from archive_export.bagwriter import FileEntry

HEADER = ["path", "bytes", "sha256", "sm3"]
TOTAL = "TOTAL"


def handover_csv(files: Sequence[FileEntry]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for f in sorted(files, key=lambda e: e.path):
        w.writerow([f.path, f.size, f.digests["sha256"], f.digests["sm3"]])
    w.writerow([TOTAL, sum(f.size for f in files), len(files), ""])
    return buf.getvalue().encode("utf-8")


@dataclass
class Handover:
    rows: list[tuple[str, int, str, str]]
    total_bytes: int | None
    total_files: int | None
    problems: list[str]


def read_handover(data: bytes) -> Handover:
    """Parse a hand-over list; malformed rows are problems, not exceptions."""
    out = Handover([], None, None, [])
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    header = next(reader, None)
    if header != HEADER:
        out.problems.append(f"header is {header}, expected {HEADER}")
    for n, row in enumerate(reader, 2):
        if len(row) != 4:
            out.problems.append(f"line {n}: {len(row)} columns, expected 4")
            continue
        try:
            if row[0] == TOTAL:
                out.total_bytes, out.total_files = int(row[1]), int(row[2])
                continue
            out.rows.append((row[0], int(row[1]), row[2], row[3]))
        except ValueError:
            out.problems.append(f"line {n}: a number is not a number: {row}")
    if out.total_bytes is None:
        out.problems.append("no TOTAL row")
    return out
