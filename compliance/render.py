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


DAY_FMT: Final = "%Y年%m月%d日"


def report_zone(data: dict[str, Any]) -> tzinfo:
    """The zone the report's times are shown in: the station's, recorded in the data
    (reports written before it was recorded are China Standard Time)."""
    name = data.get("time_zone")
    return zone_of(name) if name else CST


def _day(iso: str, zone: tzinfo, *, back: bool = False) -> str:
    """An ISO instant as its day in ``zone``; ``back``: the day before (an end that is
    exclusive, shown as the last day it includes)."""
    at = datetime.fromisoformat(iso).astimezone(zone)
    return (at - timedelta(days=1) if back else at).strftime(DAY_FMT)


def last_day(iso: str, zone: tzinfo) -> str:
    """The last day an exclusive end includes, in ``zone``: ``2026-12-31`` for the end
    ``2027-01-01T00:00+08:00`` of the year 2026."""
    return (datetime.fromisoformat(iso).astimezone(zone) - timedelta(days=1)).date().isoformat()


def _when(iso: str | None, zone: tzinfo) -> str:
    """An instant for a reader: ``2026-12-01 07:00 +08:00`` (config.timetext), or 从未."""
    return show_time(iso, zone, seconds=False) if iso else "从未"


def _period_text(data: dict[str, Any]) -> str:
    s = data["summary"]
    zone = report_zone(data)
    name = data.get("time_zone") or "Asia/Shanghai"
    zone_text = "北京时间" if name in ("Asia/Shanghai", "Asia/Chongqing") else name
    return (
        f"统计期间：{_day(s['from'], zone)}至{_day(s['to'], zone, back=True)}"
        f"（{zone_text}）；生成时间：{_when(data['generated_at'], zone)}"
    )


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:g}"


STATS_HEAD: Final = (
    "执法活动",
    "完整",
    "部分记录",
    "未记录",
    "存疑",
    "中位间断(秒)",
    "最长间断(秒)",
)


def stats_cells(d: dict[str, Any]) -> list[str]:
    return [
        str(d["actions"]),
        *(_pct(d[f"{s}_share"]) for s in STATUSES),
        _num(d["median_gap_s"]),
        _num(d["worst_gap_s"]),
    ]


def sections(data: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables, (heading, columns, rows), shared by HTML and PDF."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    summary = data["summary"]
    if summary["district"] is not None:
        out.append(("全区合计", list(STATS_HEAD), [stats_cells(summary["district"])]))
        rows = [[u["unit"], *stats_cells(u)] for u in summary["units"]]
        out.append(("各单位情况", ["单位", *STATS_HEAD], rows))
    for u in summary["units"] if summary["district"] is None else []:
        rows = [[m["month"], *stats_cells(m)] for m in u["months"]]
        out.append(("各月情况", ["月份", *STATS_HEAD], [*rows, ["全年", *stats_cells(u)]]))
        rows = [[o["officer"], o["name"], o["month"], *stats_cells(o)] for o in u["officers"]]
        out.append(("各执法人员情况", ["警号", "姓名", "月份", *STATS_HEAD], rows))
        house = [
            ["未关联案件的录像", str(u["unattached_recordings"]["count"])],
            ["长期未接入的设备", "、".join(d["serial"] for d in u["undocked_devices"]) or "无"],
            [
                "接入时时钟偏差超限的设备",
                "、".join(
                    f"{d['serial']}({d['worst_offset_s']:+g}秒)" for d in u["clock_off_devices"]
                )
                or "无",
            ],
        ]
        out.append(("设备与录像管理", ["项目", "情况"], house))
    rows = [
        [
            d["unit"],
            d["serial"],
            d["model"],
            "是" if d["assigned"] else "否",
            d["officer_name"] or d["officer"] or "",
            _when(d["last_docked"], report_zone(data)),
            _bytes(d["storage_used_bytes"]),
            _num(d["clock_offset_s"]),
            str(d["recordings_30d"]),
        ]
        for d in data["survey"]
    ]
    out.append(
        (
            "音像记录设备摸底",
            [
                "单位",
                "设备编号",
                "型号",
                "配发",
                "使用人",
                "最后接入",
                "已用存储",
                "时钟偏差(秒)",
                "近30天录像",
            ],
            rows,
        )
    )
    out.append(
        ("案卷评查", ["抽样", "案件", "执法活动", "结论", "评查人", "整改情况"], _review_rows(data))
    )
    return out


def _review_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in data["reviews"]:
        label = f"#{r['sample']} {r['period']} 种子{r['seed']}"
        for a in r["actions"]:
            rect = a.get("rectification") or (
                "待整改" if a["verdict"] in ("不完整", "不规范") else ""
            )
            rows.append(
                [
                    label,
                    a["case"],
                    a["external_id"],
                    a["verdict"] or "未评",
                    a.get("reviewer") or "",
                    rect,
                ]
            )
    return rows


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.1f} GB"


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
    rules = data["summary"]["rules"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{e(data['title'])}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(data['title'])}</h1>",
        f'<p class="meta">{e(_period_text(data))}；'
        f"规则：{'每名执法人员均须记录' if rules['rule'] == 'each' else '任一执法人员记录即可'}，"
        f"完整标准：覆盖率≥{rules['complete_share'] * 100:g}%"
        f"且最长间断≤{rules['complete_max_gap_s']:g}秒，"
        f"间断阈值{rules['gap_threshold_s']:g}秒。</p>",
        "<h2>图表</h2>",
        *(f"<figure>{to_svg(c)}</figure>" for c in charts),
    ]
    for heading, columns, rows in sections(data):
        parts.append(f"<h2>{e(heading)}</h2><table><tr>")
        parts += [f"<th>{e(c)}</th>" for c in columns]
        parts.append("</tr>")
        for row in rows or [["无"] + [""] * (len(columns) - 1)]:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>指标定义</h2><dl>")
    for d in data["definitions"]:
        parts.append(f"<dt><b>{e(d['term'])}</b></dt><dd>{e(d['definition'])}</dd>")
    parts.append(
        '</dl><p class="meta">本报告由留痕系统生成，并以采集站密钥签名（Ed25519），'
        "可用 <code>liuhen verify 报告.sig.json</code> 核验。</p></body></html>"
    )
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
        cells += [
            [Paragraph(e(c), cell) for c in row]
            for row in rows or [["无"] + [""] * (len(columns) - 1)]
        ]
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
    story.append(Paragraph("指标定义", h2))
    for d in data["definitions"]:
        # Plain text: the CJK font has no bold face registered for <b>.
        story.append(Paragraph(e(f"{d['term']}：{d['definition']}"), body))
    story.append(Spacer(1, 8))
    story.append(
        Paragraph(
            e("本报告由留痕系统生成并签名（Ed25519），可用 liuhen verify 报告.sig.json 核验。"),
            body,
        )
    )
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
