"""The self-inspection report (自查报告) a unit sends to the 区司法局, and the district-wide
summary across units: the figures as JSON, an HTML page and a PDF, in the language of the
command (Chinese by default, English with --lang en), signed.

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
from compliance.coverage import STATUS_TEXT, STATUSES, Progress, Rules
from compliance.models import ReviewSample
from compliance.periods import period
from compliance.review import sample_report
from compliance.summary import Housekeeping, summarize
from compliance.survey import survey
from config.i18n import N_, _, language
from config.settings import zone_of
from config.timetext import iso_time

SIGNATURE_FORMAT: Final = "liuhen-report-signature/1"
COLORS: Final = {
    "complete": "#2e7d32",
    "partial": "#f9a825",
    "none": "#c62828",
    "uncertain": "#9e9e9e",
}
# The terms the report defines, translated when the report is written.
DEFINITIONS: Final = (
    (
        N_("Action window"),
        N_(
            "The start and end of the enforcement action as the case-management system "
            "recorded them."
        ),
    ),
    (
        N_("Share covered"),
        N_(
            "The part of the window covered by the recordings of the recorders the officer "
            "carried (by the device assignment at each recording's capture start); where "
            "recordings overlap, the time counts once. Under the rule 'each officer' the "
            "least-recorded officer's share counts, under 'any officer' all officers' "
            "recordings together."
        ),
    ),
    (
        N_("Gap"),
        N_(
            "A stretch of the window with no recording, including the start not recorded "
            "(started late) and the end not recorded (stopped early); every gap over the "
            "threshold is listed."
        ),
    ),
    (
        N_("Complete"),
        N_(
            "The share covered is at least the set share (95% by default) and no gap is "
            "longer than the set seconds (60 by default)."
        ),
    ),
    (
        N_("Partly recorded"),
        N_("Recordings cover part of the window, short of complete."),
    ),
    (
        N_("Not recorded"),
        N_("None of the officers' recordings touches the window."),
    ),
    (
        N_("Uncertain"),
        N_(
            "A recording whose capture time is in doubt lies near the window (a device clock "
            "never set, time sources that disagree, a duration not yet read, …); it is not "
            "counted and must be checked by a person."
        ),
    ),
    (
        N_("Median and longest gap"),
        N_(
            "Of the actions complete or partly recorded, the median and the maximum of each "
            "action's longest gap (seconds)."
        ),
    ),
    (
        N_("Unattached recordings"),
        N_(
            "Recordings attached to no case more than the set days (30 by default) after "
            "they were made."
        ),
    ),
    (
        N_("Devices not docked"),
        N_(
            "Recorders not docked at a station for more than the set days (7 by default) "
            "at the end of the period."
        ),
    ),
    (
        N_("Clock offset"),
        N_(
            "The difference between the device clock and true time measured at docking "
            "(positive when the device is ahead); those beyond the set seconds (120 by "
            "default) are listed."
        ),
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
        "title": _(
            "{unit} {year}: self-inspection report on full-process audio-visual recording "
            "of enforcement"
        ).format(unit=unit, year=year)
        if unit
        else _(
            "District {year}: summary of full-process audio-visual recording of enforcement"
        ).format(year=year),
        "language": language(),
        "unit": unit,
        "year": year,
        "generated_at": iso_time(now, zone),
        "time_zone": time_zone,
        "summary": summary,
        "survey": survey(session, unit, min(now, end)),
        "reviews": reviews,
        "definitions": [{"term": _(t), "definition": _(d)} for t, d in DEFINITIONS],
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
        for _label, counts in rows:
            n = sum(counts[s] for s in STATUSES)
            values.append(counts[status] / n if n else 0.0)
        series.append(Series(_(STATUS_TEXT[status]), COLORS[status], tuple(values)))
    return Chart(title, tuple(label for label, _ in rows), tuple(series), stacked_share=True)


def charts_of(data: dict[str, Any]) -> list[Any]:
    from compliance.charts import Chart, Series

    out = []
    units = data["summary"]["units"]
    if data["unit"] is None:
        out.append(
            status_chart(
                _("Recording of enforcement actions by unit"), [(u["unit"], u) for u in units]
            )
        )
        histogram = data["summary"]["district"]["gap_histogram"] if units else {}
    else:
        u = units[0]
        out.append(
            status_chart(
                _("Recording of enforcement actions by month"),
                [(m["month"], m) for m in u["months"]],
            )
        )
        out.append(status_chart(_("Recording by officer"), officer_totals(u)))
        histogram = u["gap_histogram"]
    out.append(
        Chart(
            _("Longest gaps (number of actions)"),
            tuple(histogram),
            (Series(_("actions"), "#1565c0", tuple(float(v) for v in histogram.values())),),
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
