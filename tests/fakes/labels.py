"""Photos of parcel labels for tests: a real barcode drawn by zxing-cpp, then made to
look photographed (on a grey label, scaled, turned a few degrees, JPEG-compressed),
so the decoder under test meets what a phone camera gives it, not a clean bitmap."""

from __future__ import annotations

import io
import random

import zxingcpp
from PIL import Image, ImageDraw, ImageFilter


def barcode(text: str, kind: str = "Code128", scale: int = 3) -> Image.Image:
    """The symbol as a clean grayscale bitmap with quiet zones."""
    symbol = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.__members__[kind])
    pixels = symbol.to_image(scale=scale, add_quiet_zones=True)
    view = memoryview(pixels)  # type: ignore[arg-type]
    height, width = view.shape[0], view.shape[1]
    return Image.frombytes("L", (width, height), bytes(view))


def photographed(
    symbol: Image.Image, *, angle: float = 4.0, width: int = 900, quality: int = 55, seed: int = 7
) -> bytes:
    """`symbol` on a label with some print, photographed: scaled, rotated, noisy, JPEG."""
    rng = random.Random(seed)
    label = Image.new("RGB", (symbol.width + 240, symbol.height + 320), (236, 233, 226))
    draw = ImageDraw.Draw(label)
    for line in range(4):  # the address block above the code
        y = 30 + 34 * line
        draw.rectangle((40, y, 40 + rng.randint(200, label.width - 80), y + 14), fill=(60, 60, 60))
    label.paste(symbol.convert("RGB"), (120, 200))
    turned = label.rotate(angle, expand=True, fillcolor=(120, 110, 100), resample=Image.BICUBIC)
    scaled = turned.resize((width, round(turned.height * width / turned.width)), Image.LANCZOS)
    soft = scaled.filter(ImageFilter.GaussianBlur(0.6))
    out = io.BytesIO()
    soft.save(out, "JPEG", quality=quality)
    return out.getvalue()


def label_photo(text: str, kind: str = "Code128", **kw: float | int) -> bytes:
    return photographed(barcode(text, kind), **kw)  # type: ignore[arg-type]


def plain_photo(seed: int = 1) -> bytes:
    """A photo of a parcel with no code on it (a dented box)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (640, 480), (180, 150, 110))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randint(0, 600), rng.randint(0, 440)
        draw.ellipse((x, y, x + 40, y + 30), fill=(150, 120, 90))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A small file that decodes to `width` x `height` pixels (a decompression bomb)."""
    out = io.BytesIO()
    Image.new("1", (width, height), 1).save(out, "PNG", optimize=True)
    return out.getvalue()
