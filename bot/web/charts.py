"""Charts as SVG built on the server: no script, no library, nothing fetched from the internet.

Each function takes plain numbers and labels and returns an `<svg>` element as
markup. Every label is XML-escaped here (they come from case data: reason codes,
product names), and the numbers are formatted by us, so the result is safe to
insert into the page as is (`Markup`). Colours come from the page's CSS classes,
so the charts follow its theme.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from markupsafe import Markup

BAR_HEIGHT, GAP, LABEL_WIDTH, WIDTH = 20, 7, 150, 420  # bars: about 1:1 in a panel
WIDE = 900  # the trend and the stages span the page


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _text(x: float, y: float, value: str, cls: str = "label", anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">'
        f"{escape(value)}</text>"
    )


def bars(rows: Sequence[tuple[str, float]], *, unit: str = "", title: str = "") -> Markup:
    """Horizontal bars, one per (label, value), longest first as given."""
    if not rows:
        return Markup('<p class="empty">暂无数据</p>')
    top = max(v for _, v in rows) or 1
    span = WIDTH - LABEL_WIDTH - 60
    height = len(rows) * (BAR_HEIGHT + GAP) + GAP
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{_attr(title)}">'
    ]
    for i, (label, value) in enumerate(rows):
        y = GAP + i * (BAR_HEIGHT + GAP)
        width = max(1.0, span * value / top)
        shown = label if len(label) <= 18 else label[:17] + "…"
        parts.append(_text(LABEL_WIDTH - 8, y + 14, shown, anchor="end"))
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
            f'class="bar" rx="3"><title>{escape(label)}: {value:g}{escape(unit)}</title></rect>'
        )
        parts.append(_text(LABEL_WIDTH + width + 6, y + 15, f"{value:g}{unit}", cls="value"))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label escaped above


def stages(
    rows: Sequence[tuple[str, float | None, float | None, float | None]], *, title: str = ""
) -> Markup:
    """Per stage (label, median, p90, target): two bars and the SLA target as a line."""
    if not any(median is not None for _, median, _, _ in rows):
        return Markup('<p class="empty">暂无数据</p>')
    top = max((x for _, m, p, t in rows for x in (m, p, t) if x is not None), default=1.0) or 1
    span = WIDE - LABEL_WIDTH - 80
    step = 2 * BAR_HEIGHT + 2 * GAP
    height = len(rows) * step + GAP
    parts = [f'<svg class="chart stages" viewBox="0 0 {WIDE} {height}" role="img" '
             f'aria-label="{_attr(title)}">']  # fmt: skip
    for i, (label, median, p90, target) in enumerate(rows):
        y = GAP + i * step
        parts.append(_text(LABEL_WIDTH - 8, y + BAR_HEIGHT, label, anchor="end"))
        for j, (name, value) in enumerate((("中位数", median), ("P90", p90))):
            if value is None:
                continue
            width = max(1.0, span * value / top)
            top_y = y + j * (BAR_HEIGHT // 2 + 6)
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{top_y}" width="{width:.1f}" '
                f'height="{BAR_HEIGHT // 2 + 2}" class="bar {"p90" if j else "p50"}" rx="2">'
                f"<title>{name} {value:.1f} 小时</title></rect>"
            )
            parts.append(
                _text(LABEL_WIDTH + width + 6, top_y + 11, f"{name} {value:.1f}h", cls="value")
            )
        if target is not None:
            x = LABEL_WIDTH + span * target / top
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 3}" y2="{y + 2 * BAR_HEIGHT}" '
                f'class="target"><title>SLA 目标 {target:g} 小时</title></line>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label escaped above


def trend(rows: Sequence[tuple[str, int, int]], *, title: str = "") -> Markup:
    """Two lines over days: new cases and refunded cases."""
    if not rows:
        return Markup('<p class="empty">暂无数据</p>')
    height, left, bottom = 220, 40, 30
    top = max(max(n, r) for _, n, r in rows) or 1
    wide = WIDE - left - 10
    dx = wide / max(1, len(rows) - 1)

    def point(i: int, value: int) -> str:
        return f"{left + i * dx:.1f},{height - bottom - (height - bottom - 10) * value / top:.1f}"

    parts = [f'<svg class="chart trend" viewBox="0 0 {WIDE} {height}" role="img" '
             f'aria-label="{_attr(title)}">']  # fmt: skip
    parts.append(
        f'<line x1="{left}" x2="{WIDE - 10}" y1="{height - bottom}" y2="{height - bottom}" '
        'class="axis"/>'
    )
    parts.append(_text(left - 6, 16, f"{top}", cls="value", anchor="end"))
    series = (("new", [n for _, n, _ in rows]), ("refunded", [r for _, _, r in rows]))
    for cls, values in series:
        path = " ".join(point(i, value) for i, value in enumerate(values))
        parts.append(f'<polyline points="{path}" class="line {cls}"/>')
    for i, (day, new, refunded) in enumerate(rows):
        for cls, value in (("new", new), ("refunded", refunded)):
            parts.append(
                f'<circle cx="{left + i * dx:.1f}" cy="{point(i, value).split(",")[1]}" r="2.5" '
                f'class="dot {cls}"><title>{escape(day)} {"新增" if cls == "new" else "退款"} '
                f"{value}</title></circle>"
            )
    last = len(rows) - 1
    for i in sorted({0, last // 2, last}):
        anchor = "start" if i == 0 else "end" if i == last else "middle"
        parts.append(_text(left + i * dx, height - 8, rows[i][0][5:], anchor=anchor))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label escaped above
