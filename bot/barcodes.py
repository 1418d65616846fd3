"""Reading the barcodes in a photo of a parcel label (zxing-cpp).

Decoding is CPU work of tens to hundreds of milliseconds: callers run `read` in a
worker thread (asyncio.to_thread), never on the event loop. The pixel count is
checked from the header before any pixel is decoded, so a small file that
inflates to a huge bitmap (a decompression bomb) costs nothing; Pillow's own
bomb check (Image.MAX_IMAGE_PIXELS) is the second fence. Phones store the
camera's orientation in EXIF, so the image is turned upright first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zxingcpp
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

# Return labels carry Code 128 (every Chinese carrier's waybill), a QR code (a
# tracking URL) or EAN/UPC (the product's own code).
FORMATS = zxingcpp.barcode_formats_from_str("Code128,QRCode,EAN13,EAN8,UPCA,UPCE")
UNREADABLE = "unreadable"
TOO_MANY_PIXELS = "too_many_pixels"


@dataclass(frozen=True, slots=True)
class Decoded:
    codes: tuple[str, ...] = ()
    problem: str = ""  # "" | unreadable | too_many_pixels
    width: int = 0
    height: int = 0


def read(path: Path, max_pixels: int) -> Decoded:
    """The codes in the image at `path`, in reading order (blocking: run in a thread)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                return Decoded((), TOO_MANY_PIXELS, width, height)
            upright = ImageOps.exif_transpose(image).convert("L")
    except Image.DecompressionBombError:
        return Decoded((), TOO_MANY_PIXELS)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        log.info("image %s unreadable: %s", path.name, exc)
        return Decoded((), UNREADABLE)
    found = zxingcpp.read_barcodes(upright, formats=FORMATS)
    texts = tuple(dict.fromkeys(b.text.strip() for b in found if b.valid and b.text.strip()))
    return Decoded(texts, "", width, height)
