"""Bar charts of the self-inspection report, drawn twice from one description: as inline
SVG for the HTML report and as a ReportLab drawing for the PDF, so both show the same
bars. Deliberately small: stacked shares per category, or plain counts per category.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

WIDTH, HEIGHT = 640.0, 260.0
LEFT, RIGHT, TOP, BOTTOM = 48.0, 12.0, 30.0, 56.0


@dataclass(frozen=True)
class Series:
    name: str
    color: str  # #rrggbb
    values: tuple[float, ...]


@dataclass(frozen=True)
class Chart:
    title: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    stacked_share: bool  # True: values are shares (0..1) stacked to 100%; else counts

    def top(self) -> float:
        if self.stacked_share:
            return 1.0
        return max([v for s in self.series for v in s.values] + [1.0])


@dataclass(frozen=True)
class Bar:
    x: float
    y: float  # from the top of the drawing
    w: float
    h: float
    color: str


def _layout(chart: Chart) -> tuple[list[Bar], list[tuple[float, str]], list[tuple[float, str]]]:
    """Bars, category labels (x, text) and axis ticks (y, text), in SVG coordinates."""
    n = max(len(chart.categories), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    width = slot * 0.7
    top = chart.top()
    bars: list[Bar] = []
    for i in range(len(chart.categories)):
        x = LEFT + i * slot + (slot - width) / 2
        base = 0.0
        for s in chart.series:
            value = s.values[i]
            h = plot_h * value / top
            if chart.stacked_share:
                bars.append(Bar(x, TOP + plot_h - base - h, width, h, s.color))
                base += h
            else:
                w = width / len(chart.series)
                k = chart.series.index(s)
                bars.append(Bar(x + k * w, TOP + plot_h - h, w, h, s.color))
    labels = [(LEFT + (i + 0.5) * slot, c) for i, c in enumerate(chart.categories)]
    ticks = []
    for j in range(5):
        frac = j / 4
        text = f"{frac * 100:.0f}%" if chart.stacked_share else f"{top * frac:g}"
        ticks.append((TOP + plot_h * (1 - frac), text))
    return bars, labels, ticks


def to_svg(chart: Chart) -> str:
    bars, labels, ticks = _layout(chart)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:g}" height="{HEIGHT:g}" '
        f'viewBox="0 0 {WIDTH:g} {HEIGHT:g}" role="img" aria-label="{escape(chart.title)}">',
        f'<text x="{LEFT:g}" y="18" font-size="14">{escape(chart.title)}</text>',
    ]
    for y, text in ticks:
        parts.append(
            f'<line x1="{LEFT:g}" x2="{WIDTH - RIGHT:g}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{LEFT - 4:g}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{escape(text)}</text>"
        )
    for b in bars:
        parts.append(
            f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" '
            f'fill="{b.color}"/>'
        )
    for x, text in labels:
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14:g}" font-size="10" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    lx = LEFT
    for s in chart.series:
        parts.append(
            f'<rect x="{lx:g}" y="{HEIGHT - 20:g}" width="10" height="10" fill="{s.color}"/>'
            f'<text x="{lx + 14:g}" y="{HEIGHT - 11:g}" font-size="11">{escape(s.name)}</text>'
        )
        lx += 24 + 12 * len(s.name)
    parts.append("</svg>")
    return "".join(parts)


def to_drawing(chart: Chart, font: str, scale: float = 0.75) -> Any:
    """The same chart as a ReportLab Drawing (y grows upwards there)."""
    from reportlab.graphics.shapes import Drawing, Line, Rect, String
    from reportlab.lib.colors import HexColor

    bars, labels, ticks = _layout(chart)
    d = Drawing(WIDTH * scale, HEIGHT * scale)

    def y(v: float) -> float:
        return (HEIGHT - v) * scale

    d.add(String(LEFT * scale, y(18), chart.title, fontName=font, fontSize=11))
    for ty, text in ticks:
        d.add(
            Line(
                LEFT * scale, y(ty), (WIDTH - RIGHT) * scale, y(ty), strokeColor=HexColor("#dddddd")
            )
        )
        d.add(
            String((LEFT - 4) * scale, y(ty + 4), text, fontName=font, fontSize=7, textAnchor="end")
        )
    for b in bars:
        d.add(
            Rect(
                b.x * scale,
                y(b.y + b.h),
                b.w * scale,
                b.h * scale,
                fillColor=HexColor(b.color),
                strokeColor=None,
            )
        )
    for x, text in labels:
        d.add(
            String(
                x * scale,
                y(HEIGHT - BOTTOM + 14),
                text,
                fontName=font,
                fontSize=7,
                textAnchor="middle",
            )
        )
    lx = LEFT
    for s in chart.series:
        d.add(Rect(lx * scale, y(HEIGHT - 10), 8, 8, fillColor=HexColor(s.color), strokeColor=None))
        d.add(String((lx + 14) * scale, y(HEIGHT - 11), s.name, fontName=font, fontSize=8))
        lx += 24 + 12 * len(s.name)
    return d
