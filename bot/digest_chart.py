"""The daily digest's PNG: top return reasons as bars beside a 7-day trend of new and
refunded cases, drawn with Pillow in a CJK font found on the system.

The font is looked up in the paths Debian's fonts-noto-cjk (`make browser-deps`)
and other common packages install to, then through `fc-match`; with none found
`find_font` answers None and the digest goes out as markdown alone
(handlers/digest.py says why in the log). Drawing is deterministic for the same
figures, so a retried outbox row sends byte-identical images (same md5).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess  # noqa: S404 - fc-match only, fixed arguments
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
)
WIDTH, HEIGHT = 960, 420
MAX_BYTES = 2 << 20  # WeCom group robot images: at most 2 MB
INK, GRID, BAR, NEW, REFUNDED = "#1f2933", "#d9dee3", "#3b82f6", "#3b82f6", "#10b981"


class NoFont(RuntimeError):
    """No CJK font on this system: Chinese labels would draw as boxes."""


@functools.cache
def find_font(paths: tuple[str, ...] = FONT_PATHS) -> Path | None:
    """A font file with Chinese glyphs, or None."""
    for candidate in paths:
        if Path(candidate).is_file():
            return Path(candidate)
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        found = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [fc_match, "-f", "%{file}", "sans-serif:lang=zh-cn"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    # fc-match always names some font: only take one that says it covers Chinese.
    if found and Path(found).is_file() and any(k in found for k in ("CJK", "wqy", "Hei")):
        return Path(found)
    return None


def render(chart: dict[str, Any], font_path: Path | None = None) -> bytes:
    """The PNG of `chart` (handlers/digest_text.py `Digest.chart_data`)."""
    path = font_path or find_font()
    if path is None:
        raise NoFont("no CJK font installed (fonts-noto-cjk)")
    font = ImageFont.truetype(str(path), 18)
    small = ImageFont.truetype(str(path), 14)
    title = ImageFont.truetype(str(path), 24)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.text((24, 16), str(chart.get("title", "")), fill=INK, font=title)
    _reasons(draw, chart.get("reasons") or [], (24, 70, 470, HEIGHT - 24), font, small)
    _trend(draw, chart.get("trend") or [], (510, 70, WIDTH - 24, HEIGHT - 24), font, small)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _reasons(
    draw: Any, rows: list[Any], box: tuple[int, int, int, int], font: Any, small: Any
) -> None:
    left, top, right, bottom = box
    draw.text((left, top), "退货原因 TOP", fill=INK, font=font)
    if not rows:
        draw.text((left, top + 40), "昨天没有新的售后单", fill=INK, font=small)
        return
    most = max(int(n) for _, n in rows) or 1
    row_h = min(48, (bottom - top - 40) // len(rows))
    for i, (label, n) in enumerate(rows):
        y = top + 40 + i * row_h
        draw.text((left, y), _fit(str(label), small, right - left), fill=INK, font=small)
        width = int((right - left - 60) * int(n) / most)
        draw.rectangle((left, y + 20, left + max(width, 2), y + 20 + row_h // 3), fill=BAR)
        draw.text((left + width + 8, y + 14), f"{n} 单", fill=INK, font=small)


def _fit(text: str, font: Any, width: int) -> str:
    """`text` cut (with …) to `width` pixels in `font`."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _trend(
    draw: Any, days: list[Any], box: tuple[int, int, int, int], font: Any, small: Any
) -> None:
    left, top, right, bottom = box
    draw.text((left, top), "近 7 天：新增 / 退款", fill=INK, font=font)
    draw.rectangle((right - 150, top + 6, right - 138, top + 18), fill=NEW)
    draw.text((right - 132, top + 2), "新增", fill=INK, font=small)
    draw.rectangle((right - 80, top + 6, right - 68, top + 18), fill=REFUNDED)
    draw.text((right - 62, top + 2), "退款", fill=INK, font=small)
    if not days:
        return
    plot_top, plot_bottom = top + 50, bottom - 28
    most = max(max(int(d[1]), int(d[2])) for d in days) or 1
    draw.line((left, plot_bottom, right, plot_bottom), fill=GRID, width=1)
    step = (right - left) / max(len(days) - 1, 1)

    def point(i: int, value: int) -> tuple[float, float]:
        return left + i * step, plot_bottom - (plot_bottom - plot_top) * value / most

    for column, colour, above in ((1, NEW, True), (2, REFUNDED, False)):
        points = [point(i, int(d[column])) for i, d in enumerate(days)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3)
        for (x, y), d in zip(points, days, strict=True):
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour)
            label = str(d[column])
            width = small.getlength(label)
            draw.text((x - width / 2, y - 24 if above else y + 6), label, fill=colour, font=small)
    for i, d in enumerate(days):
        x, _ = point(i, 0)
        draw.text((x - 18, plot_bottom + 6), str(d[0])[5:], fill=INK, font=small)
