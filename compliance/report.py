"""The self-inspection report (自查报告) a unit sends to the 区司法局, and the district-wide
summary across units: the figures as JSON, an HTML page and a PDF, in Chinese, signed.

Files written to the output folder, named ``<stem>.json``, ``.html``, ``.pdf`` and
``.sig.json``. The signature file names each file's SHA-256 and size, the station and its
Ed25519 key, and signs its own canonical JSON; `liuhen verify <stem>.sig.json` checks it
offline (a flipped byte in any file fails it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.canonical import canonical_json
from catalog.signing import Signer, judge_trust, key_id_of, verify_signature
from compliance.coverage import STATUS_ZH, STATUSES, Progress, Rules
from compliance.models import ReviewSample
from compliance.periods import period
from compliance.review import sample_report
from compliance.summary import Housekeeping, summarize
from compliance.survey import survey
from config.settings import zone_of
from config.timetext import iso_time

SIGNATURE_FORMAT: Final = "liuhen-report-signature/1"
COLORS: Final = {
    "complete": "#2e7d32",
    "partial": "#f9a825",
    "none": "#c62828",
    "uncertain": "#9e9e9e",
}
DEFINITIONS: Final = (
    ("执法活动时间窗", "案件管理系统记录的执法活动开始至结束时间。"),
    (
        "覆盖率",
        "执法人员所持执法记录仪（按拍摄开始时的设备配发记录确定）在时间窗内的录像总时长占时间窗的比例；"
        "多段录像重叠部分只计一次。规则为“每人”时取覆盖率最低的执法人员，为“任一”时取全体合计。",
    ),
    (
        "间断",
        "时间窗内无录像的连续时段，含开始前未录（迟录）和结束前停录（早停）；超过阈值的间断逐条列出。",
    ),
    ("完整", "覆盖率不低于设定比例（默认95%）且最长间断不超过设定秒数（默认60秒）。"),
    ("部分记录", "有录像覆盖时间窗的一部分，但未达到“完整”标准。"),
    ("未记录", "执法人员的录像均未触及时间窗。"),
    (
        "存疑",
        "时间窗附近有拍摄时间存疑的录像（设备时钟未设置、多个时间来源相差过大、尚未解析时长等），"
        "该录像不计入覆盖率，须人工核实。",
    ),
    ("中位间断、最长间断", "已完整或部分记录的执法活动中，各活动最长间断的中位数和最大值（秒）。"),
    ("未关联录像", "拍摄后超过设定天数（默认30天）仍未关联任何案件的录像数。"),
    ("未接入设备", "截至报告期末超过设定天数（默认7天）未在采集站接入的执法记录仪。"),
    (
        "时钟偏差",
        "采集站接入时测得的设备时钟与标准时间之差（设备快为正）；超过设定秒数（默认120秒）的列出。",
    ),
)


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    html: Path
    pdf: Path
    signature: Path


def report_data(
    session: Session,
    rules: Rules,
    house: Housekeeping,
    *,
    unit: str | None,
    year: int,
    now: datetime,
    time_zone: str = "Asia/Shanghai",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every figure the report shows, as JSON-ready data (signed with the report); its
    times are shown in ``time_zone`` (the station's), recorded with the data."""
    zone = zone_of(time_zone)
    start, end = period(str(year), zone)
    summary = summarize(
        session,
        rules,
        house,
        unit=unit,
        start=start,
        end=end,
        now=now,
        zone=zone,
        progress=progress,
    )
    samples = session.scalars(
        select(ReviewSample).where(ReviewSample.period.like(f"{year}%")).order_by(ReviewSample.id)
    )
    reviews = [sample_report(session, s) for s in samples if unit is None or s.unit == unit]
    return {
        "title": f"{unit or '全区'}{year}年度执法全过程音像记录自查报告"
        if unit
        else f"{year}年度全区执法全过程音像记录情况汇总",
        "unit": unit,
        "year": year,
        "generated_at": iso_time(now, zone),
        "time_zone": time_zone,
        "summary": summary,
        "survey": survey(session, unit, min(now, end)),
        "reviews": reviews,
        "definitions": [{"term": t, "definition": d} for t, d in DEFINITIONS],
    }


def officer_totals(unit: dict[str, Any]) -> list[tuple[str, dict[str, int]]]:
    """Per officer, the year's counts by status (the summary has them per month)."""
    totals: dict[str, dict[str, int]] = {}
    for o in unit["officers"]:
        label = f"{o['name'] or o['officer']}"
        t = totals.setdefault(label, dict.fromkeys(STATUSES, 0))
        for status in STATUSES:
            t[status] += o[status]
    return sorted(totals.items())


def status_chart(title: str, rows: list[tuple[str, dict[str, Any]]]) -> Any:
    from compliance.charts import Chart, Series

    series = []
    for status in STATUSES:
        values = []
        for _, counts in rows:
            n = sum(counts[s] for s in STATUSES)
            values.append(counts[status] / n if n else 0.0)
        series.append(Series(STATUS_ZH[status], COLORS[status], tuple(values)))
    return Chart(title, tuple(label for label, _ in rows), tuple(series), stacked_share=True)


def charts_of(data: dict[str, Any]) -> list[Any]:
    from compliance.charts import Chart, Series

    out = []
    units = data["summary"]["units"]
    if data["unit"] is None:
        out.append(status_chart("各单位执法活动记录情况", [(u["unit"], u) for u in units]))
        histogram = data["summary"]["district"]["gap_histogram"] if units else {}
    else:
        u = units[0]
        out.append(status_chart("各月执法活动记录情况", [(m["month"], m) for m in u["months"]]))
        out.append(status_chart("各执法人员记录情况", officer_totals(u)))
        histogram = u["gap_histogram"]
    out.append(
        Chart(
            "最长间断分布（执法活动数）",
            tuple(histogram),
            (Series("执法活动", "#1565c0", tuple(float(v) for v in histogram.values())),),
            stacked_share=False,
        )
    )
    return out


def write_report(
    data: dict[str, Any], out_dir: Path, stem: str, signer: Signer
) -> tuple[ReportFiles, dict[str, Any]]:
    """Write the JSON, HTML and PDF and sign them; returns the files and the signature."""
    from compliance.render import render_html, render_pdf

    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        json=out_dir / f"{stem}.json",
        html=out_dir / f"{stem}.html",
        pdf=out_dir / f"{stem}.pdf",
        signature=out_dir / f"{stem}.sig.json",
    )
    charts = charts_of(data)
    _write(files.json, (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    _write(files.html, render_html(data, charts).encode("utf-8"))
    _write(files.pdf, render_pdf(data, charts))
    signature = sign_files(signer, [files.pdf, files.json, files.html])
    _write(files.signature, (json.dumps(signature, ensure_ascii=False, indent=2) + "\n").encode())
    return files, signature


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a report cut short by a crash is never left under its name."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _digest(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def sign_files(signer: Signer, paths: list[Path]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "format": SIGNATURE_FORMAT,
        "station": signer.station_id,
        "key_id": signer.key_id,
        "public_key": signer.public_key.hex(),
        "signed_at": datetime.now(UTC).isoformat(),
        "files": {p.name: _digest(p) for p in paths},
    }
    return body | {"signature": signer.sign(canonical_json(body).encode("utf-8")).hex()}


# What a signature file must cover: the report as read (PDF), as published (HTML) and as
# data (JSON). A signature over fewer files, or none, vouches for nothing a reader sees.
REPORT_SUFFIXES: Final = (".pdf", ".json", ".html")


def verify_report(sig_path: Path, trusted: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """Check a report's signature file and every file it names (offline).

    ``trusted``: the key ring (station id -> key ids), or None when none was given; the
    verdict's "trust" is then "self-declared", as for a bag: anyone can sign a report with
    a key of their own and name any station.
    """
    problems: list[str] = []
    sig = _read_signature(sig_path, problems)
    checked: dict[str, bool] = {}
    trust, trusted_by = judge_trust(str(sig.get("key_id")), trusted)
    if sig:
        _check_signature(sig, problems)
        _check_trust(sig, trust, trusted_by, problems)
        checked = _check_files(sig_path, sig.get("files"), problems)
    return {
        "ok": not problems,
        "signature_file": str(sig_path),
        "station": sig.get("station"),
        "key_id": sig.get("key_id"),
        "signed_at": sig.get("signed_at"),
        "trust": trust,
        "trusted_by": trusted_by,
        "files": checked,
        "problems": problems,
    }


def _read_signature(sig_path: Path, problems: list[str]) -> dict[str, Any]:
    """The signature file's fields, or {} with the reason among the problems."""
    try:
        sig = json.loads(sig_path.read_bytes())
    except OSError as exc:
        problems.append(f"cannot read the signature file: {exc.strerror}")
        return {}
    except ValueError:
        problems.append("the signature file is not JSON")
        return {}
    if not isinstance(sig, dict):
        problems.append("the signature file is not a JSON object")
        return {}
    for field in ("station", "key_id", "public_key", "signature", "signed_at"):
        if not isinstance(sig.get(field), str):
            problems.append(f"the signature file's {field!r} is missing or not text")
    if not isinstance(sig.get("files"), dict):
        problems.append("the signature file's 'files' is missing or not an object")
    return sig


def _check_signature(sig: dict[str, Any], problems: list[str]) -> None:
    body = {k: v for k, v in sig.items() if k != "signature"}
    try:
        public = bytes.fromhex(str(sig.get("public_key", "")))
        signature = bytes.fromhex(str(sig.get("signature", "")))
    except ValueError:
        public, signature = b"", b""
    if key_id_of(public) != sig.get("key_id"):
        problems.append("the key id does not match the public key")
    elif not verify_signature(public, signature, canonical_json(body).encode("utf-8")):
        problems.append("the signature does not verify: the signature file was altered")


def _check_trust(
    sig: dict[str, Any], trust: str, trusted_by: list[str], problems: list[str]
) -> None:
    key_id, station = sig.get("key_id"), sig.get("station")
    if trust == "untrusted":
        problems.append(f"key {key_id} of {station} is in none of the given key rings")
    elif trust == "trusted" and station not in trusted_by:
        # The station is whatever the signer wrote: the ring says whose key it really is.
        problems.append(
            f"key {key_id} is trusted for station {', '.join(trusted_by)}, "
            f"not for {station}, the station the report names"
        )


def _check_files(sig_path: Path, files: Any, problems: list[str]) -> dict[str, bool]:
    """Each signed file against its digest; the report's PDF, JSON and HTML must be there."""
    if not isinstance(files, dict):
        return {}
    checked: dict[str, bool] = {}
    for name, expected in sorted(files.items()):
        base = Path(name).name
        if base in ("", ".", "..") or base.endswith(".sig.json"):
            problems.append(f"{name!r}: not a report file name")
            continue
        path = sig_path.with_name(base)
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        checked[name] = _digest(path) == expected
        if not checked[name]:
            problems.append(f"{name}: content differs from the signed SHA-256 (altered)")
    for suffix in REPORT_SUFFIXES:
        if not any(Path(n).name.endswith(suffix) for n in files):
            problems.append(f"the signature covers no {suffix[1:].upper()} file of the report")
    return checked
