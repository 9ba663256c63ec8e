"""``data/metadata/handover.csv``: the hand-over list (移交清单).

One row per payload file (path, bytes, SHA-256, SM3), sorted by path, then a totals row
whose first column is ``合计``: total bytes, then the number of files. Paths always
start with ``data/``, so the totals row cannot be mistaken for a file.

The list is read by the archivists who receive the bag, in Excel on a Chinese Windows
desktop: so its headers are Chinese whoever exported it (a bag's files never change with
the exporter's language), it starts with a UTF-8 byte-order mark (without one, Excel
reads UTF-8 as the local GBK code page and shows mojibake), lines end with CRLF, and
fields are quoted as RFC 4180 says. Lists written before (English headers, ``TOTAL``,
no mark, LF) are still read.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from archive_export.bagwriter import FileEntry
from archive_export.msg import Msg
from config.i18n import N_

HEADER = ["文件路径", "字节数", "SHA-256", "SM3"]
TOTAL = "合计"
# What lists written before the Chinese headers said.
OLD_HEADER = ["path", "bytes", "sha256", "sm3"]
OLD_TOTAL = "TOTAL"


def handover_csv(files: Sequence[FileEntry]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(HEADER)
    for f in sorted(files, key=lambda e: e.path):
        w.writerow([f.path, f.size, f.digests["sha256"], f.digests["sm3"]])
    w.writerow([TOTAL, sum(f.size for f in files), len(files), ""])
    return codecs.BOM_UTF8 + buf.getvalue().encode("utf-8")


@dataclass
class Handover:
    rows: list[tuple[str, int, str, str]]
    total_bytes: int | None
    total_files: int | None
    problems: list[str]


def read_handover(data: bytes) -> Handover:
    """Parse a hand-over list; malformed rows are problems, not exceptions."""
    out = Handover([], None, None, [])
    text = data.decode("utf-8-sig", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header not in (HEADER, OLD_HEADER):
        out.problems.append(
            Msg(N_("header is {header}, expected {expected}"), header=header, expected=HEADER)
        )
    for n, row in enumerate(reader, 2):
        if len(row) != 4:
            out.problems.append(
                Msg(N_("line {line}: {count} columns, expected 4"), line=n, count=len(row))
            )
            continue
        try:
            if row[0] in (TOTAL, OLD_TOTAL):
                out.total_bytes, out.total_files = int(row[1]), int(row[2])
                continue
            out.rows.append((row[0], int(row[1]), row[2], row[3]))
        except ValueError:
            out.problems.append(
                Msg(N_("line {line}: a number is not a number: {row}"), line=n, row=row)
            )
    if out.total_bytes is None:
        out.problems.append(Msg(N_("no {total} row"), total=TOTAL))
    return out
