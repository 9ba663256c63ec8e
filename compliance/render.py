"""The self-inspection report as HTML (self-contained, inline SVG charts) and as PDF
(ReportLab, with a TrueType CJK font from the system: Debian's fonts-wqy-zenhei)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, tzinfo
from html import escape
from pathlib import Path
from typing import Any, Final

from catalog.errors import CatalogError
from compliance.charts import Chart, to_drawing, to_svg
from compliance.coverage import STATUSES
from compliance.periods import CST
from config.errors import EXIT_CONFIG
from config.i18n import N_, _, language
from config.settings import zone_of
from config.timetext import show_time

FONT_CANDIDATES: Final = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
)
FONT_NAME: Final = "LiuhenCJK"


class FontMissing(CatalogError):
    exit_code = EXIT_CONFIG


# A day as the report's language writes it (2026年01月01日, or 2026-01-01).
DAY_TEXT: Final = N_("{year}-{month:02d}-{day:02d}")


def report_zone(data: dict[str, Any]) -> tzinfo:
    """The zone the report's times are shown in: the station's, recorded in the data
    (reports written before it was recorded are China Standard Time)."""
    name = data.get("time_zone")
    return zone_of(name) if name else CST


def _day(iso: str, zone: tzinfo, *, back: bool = False) -> str:
    """An ISO instant as its day in ``zone``; ``back``: the day before (an end that is
    exclusive, shown as the last day it includes)."""
    at = datetime.fromisoformat(iso).astimezone(zone)
    day = at - timedelta(days=1) if back else at
    return _(DAY_TEXT).format(year=day.year, month=day.month, day=day.day)


def last_day(iso: str, zone: tzinfo) -> str:
    """The last day an exclusive end includes, in ``zone``: ``2026-12-31`` for the end
    ``2027-01-01T00:00+08:00`` of the year 2026."""
    return (datetime.fromisoformat(iso).astimezone(zone) - timedelta(days=1)).date().isoformat()


def _when(iso: str | None, zone: tzinfo) -> str:
    """An instant for a reader: ``2026-12-01 07:00 +08:00`` (config.timetext), or never."""
    return show_time(iso, zone, seconds=False) if iso else _("never")


def _period_text(data: dict[str, Any]) -> str:
    s = data["summary"]
    zone = report_zone(data)
    name = data.get("time_zone") or "Asia/Shanghai"
    zone_text = _("Beijing time") if name in ("Asia/Shanghai", "Asia/Chongqing") else name
    return _("Period: {first} to {last} ({zone}); generated {when}").format(
        first=_day(s["from"], zone),
        last=_day(s["to"], zone, back=True),
        zone=zone_text,
        when=_when(data["generated_at"], zone),
    )


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:g}"


STATS_HEAD: Final = (
    N_("actions"),
    N_("complete"),
    N_("partly recorded"),
    N_("not recorded"),
    N_("uncertain"),
    N_("median gap (s)"),
    N_("worst gap (s)"),
)


def _heads(*heads: str) -> list[str]:
    return [_(h) for h in heads]


def _listed(items: list[str]) -> str:
    """Items listed as the language lists them (、 in Chinese), or none."""
    return _(", ").join(items) or _("none")


def stats_cells(d: dict[str, Any]) -> list[str]:
    return [
        str(d["actions"]),
        *(_pct(d[f"{s}_share"]) for s in STATUSES),
        _num(d["median_gap_s"]),
        _num(d["worst_gap_s"]),
    ]


Section = tuple[str, list[str], list[list[str]]]


def sections(data: dict[str, Any]) -> list[Section]:
    """The report's tables, (heading, columns, rows), shared by HTML and PDF."""
    out: list[Section] = []
    summary = data["summary"]
    if summary["district"] is not None:
        out.append((_("District total"), _heads(*STATS_HEAD), [stats_cells(summary["district"])]))
        rows = [[u["unit"], *stats_cells(u)] for u in summary["units"]]
        out.append((_("By unit"), _heads(N_("unit"), *STATS_HEAD), rows))
    for u in summary["units"] if summary["district"] is None else []:
        out += _unit_sections(u)
    out.append(_survey_section(data))
    columns = _heads(
        N_("sample"), N_("case"), N_("action"), N_("verdict"), N_("reviewer"), N_("rectification")
    )
    out.append((_("Case-file review"), columns, _review_rows(data)))
    return out


def _unit_sections(u: dict[str, Any]) -> list[Section]:
    rows = [[m["month"], *stats_cells(m)] for m in u["months"]]
    out: list[Section] = [
        (
            _("By month"),
            _heads(N_("month"), *STATS_HEAD),
            [*rows, [_("whole year"), *stats_cells(u)]],
        )
    ]
    rows = [[o["officer"], o["name"], o["month"], *stats_cells(o)] for o in u["officers"]]
    heads = _heads(N_("officer number"), N_("officer name"), N_("month"), *STATS_HEAD)
    out.append((_("By officer"), heads, rows))
    clock_off = [
        _("{serial} ({seconds})").format(
            serial=d["serial"], seconds=_("{n:+g} s").format(n=d["worst_offset_s"])
        )
        for d in u["clock_off_devices"]
    ]
    house = [
        [_("Recordings attached to no case"), str(u["unattached_recordings"]["count"])],
        [_("Devices long not docked"), _listed([d["serial"] for d in u["undocked_devices"]])],
        [_("Devices whose clock was off at docking"), _listed(clock_off)],
    ]
    out.append((_("Devices and recordings"), _heads(N_("item"), N_("finding")), house))
    return out


def _survey_section(data: dict[str, Any]) -> Section:
    zone = report_zone(data)
    rows = [
        [
            d["unit"],
            d["serial"],
            d["model"],
            _("yes") if d["assigned"] else _("no"),
            d["officer_name"] or d["officer"] or "",
            _when(d["last_docked"], zone),
            _bytes(d["storage_used_bytes"]),
            _num(d["clock_offset_s"]),
            str(d["recordings_30d"]),
        ]
        for d in data["survey"]
    ]
    columns = _heads(
        N_("unit"),
        N_("serial"),
        N_("model"),
        N_("assigned"),
        N_("holder"),
        N_("last docked"),
        N_("storage used"),
        N_("clock offset (s)"),
        N_("recordings in 30 days"),
    )
    return (_("Equipment survey"), columns, rows)


def _review_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in data["reviews"]:
        label = _("#{sample} {period} seed {seed}").format(
            sample=r["sample"], period=r["period"], seed=r["seed"]
        )
        for a in r["actions"]:
            rect = a.get("rectification") or (
                _("to be rectified") if a["verdict"] in ("不完整", "不规范") else ""
            )
            rows.append(
                [
                    label,
                    a["case"],
                    a["external_id"],
                    a["verdict"] or _("not reviewed"),
                    a.get("reviewer") or "",
                    rect,
                ]
            )
    return rows


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.1f} GB"


def _empty(columns: list[str]) -> list[list[str]]:
    return [[_("none")] + [""] * (len(columns) - 1)]


def _rules_text(rules: dict[str, Any]) -> str:
    return _(
        "Rule: {rule}; complete: share ≥ {share:g}% and no gap over {gap:g} s; gaps "
        "listed over {threshold:g} s."
    ).format(
        rule=_("each officer") if rules["rule"] == "each" else _("any officer"),
        share=rules["complete_share"] * 100,
        gap=rules["complete_max_gap_s"],
        threshold=rules["gap_threshold_s"],
    )


def _signed_text(command: str) -> str:
    return _(
        "This report was made by 留痕 and signed with the station's key (Ed25519); "
        "check it with {command}."
    ).format(command=command)


CSS: Final = """
body{font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
margin:2em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #999;padding:2px 6px;font-size:13px}
th{background:#eee}
h1{font-size:22px}h2{font-size:17px;margin-top:1.5em}
.meta{color:#555;font-size:13px}
"""


def render_html(data: dict[str, Any], charts: list[Chart]) -> str:
    e = escape
    command = "<code>liuhen verify {name}.sig.json</code>".format(name=e(_("report")))
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"zh-CN" if language() == "zh" else "en"}"><head><meta charset="utf-8">',
        f"<title>{e(data['title'])}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(data['title'])}</h1>",
        f'<p class="meta">{e(_period_text(data))} {e(_rules_text(data["summary"]["rules"]))}</p>',
        f"<h2>{e(_('Charts'))}</h2>",
        *(f"<figure>{to_svg(c)}</figure>" for c in charts),
    ]
    for heading, columns, rows in sections(data):
        parts.append(f"<h2>{e(heading)}</h2><table><tr>")
        parts += [f"<th>{e(c)}</th>" for c in columns]
        parts.append("</tr>")
        for row in rows or _empty(columns):
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    parts.append(f"<h2>{e(_('Definitions'))}</h2><dl>")
    for d in data["definitions"]:
        parts.append(f"<dt><b>{e(d['term'])}</b></dt><dd>{e(d['definition'])}</dd>")
    # The command is markup of our own; the sentence around it is escaped.
    signed = e(_signed_text("\0")).replace("\0", command)
    parts.append(f'</dl><p class="meta">{signed}</p></body></html>')
    return "\n".join(parts)


def cjk_font() -> Path:
    for path in FONT_CANDIDATES:
        if path.is_file():
            return path
    raise FontMissing(
        "no CJK TrueType font found for the PDF report "
        f"(looked for {', '.join(str(p) for p in FONT_CANDIDATES)})",
        hint="install Debian's fonts-wqy-zenhei (scripts/setup.sh does)",
    )


def render_pdf(data: dict[str, Any], charts: list[Chart]) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    if FONT_NAME not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT_NAME, str(cjk_font()), subfontIndex=0))
    body = ParagraphStyle("body", fontName=FONT_NAME, fontSize=9, leading=13, wordWrap="CJK")
    cell = ParagraphStyle("cell", parent=body, fontSize=7.5, leading=10)
    h1 = ParagraphStyle("h1", parent=body, fontSize=16, leading=22, spaceAfter=6)
    h2 = ParagraphStyle("h2", parent=body, fontSize=12, leading=16, spaceBefore=8, spaceAfter=4)
    e = escape
    story: list[Any] = [
        Paragraph(e(data["title"]), h1),
        Paragraph(e(_period_text(data)), body),
        Spacer(1, 6),
    ]
    story += [to_drawing(c, FONT_NAME) for c in charts]
    for heading, columns, rows in sections(data):
        story.append(Paragraph(e(heading), h2))
        cells = [[Paragraph(e(c), cell) for c in columns]]
        cells += [[Paragraph(e(c), cell) for c in row] for row in rows or _empty(columns)]
        table = Table(cells, repeatRows=1)
        table.setStyle(
            TableStyle(
                [
                    ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        story.append(table)
    story.append(Paragraph(e(_("Definitions")), h2))
    for d in data["definitions"]:
        # Plain text: the CJK font has no bold face registered for <b>.
        story.append(
            Paragraph(
                e(_("{term}: {definition}").format(term=d["term"], definition=d["definition"])),
                body,
            )
        )
    story.append(Spacer(1, 8))
    command = "liuhen verify {name}.sig.json".format(name=_("report"))
    story.append(Paragraph(e(_signed_text(command)), body))
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=landscape(A4),
        title=data["title"],
        author="留痕 liuhen",
        leftMargin=36,
        rightMargin=36,
        topMargin=36,
        bottomMargin=36,
    )
    doc.build(story)
    return buf.getvalue()
