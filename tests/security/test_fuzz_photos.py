"""Photos are the buyer's and the warehouse's bytes, never trusted: whatever a file
holds (random bytes, a real image cut short or with bytes flipped, a broken EXIF
orientation), the barcode reader answers codes or a named problem, never raises,
and the evidence store keeps it under its digest and nowhere else."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from bot import barcodes
from storage.evidence import EvidenceStore, is_sha256
from tests.security.conftest import fuzz_settings

MAX_PIXELS = 4_000_000
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP")


def image_bytes(fmt: str, size: tuple[int, int] = (24, 16), orientation: int = 0) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", size, (200, 40, 40))
    if orientation and fmt in ("JPEG", "TIFF", "WEBP", "PNG"):
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(out, fmt, exif=exif)
    else:
        image.save(out, fmt)
    return out.getvalue()


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A real image of some format, then cut, flipped or spliced."""
    fmt = draw(st.sampled_from(FORMATS))
    orientation = draw(st.sampled_from([0, 1, 3, 6, 8, 9, 255]))
    raw = bytearray(image_bytes(fmt, orientation=orientation))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(raw) - 1))
        raw[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(min_value=1, max_value=len(raw)))
    return bytes(raw[:cut]) + draw(st.binary(max_size=32))


photos = st.one_of(st.binary(max_size=512), damaged_images())


@fuzz_settings("sqlite")
@given(content=photos)
@example(content=b"")
@example(content=b"\x89PNG\r\n\x1a\n")
@example(content=image_bytes("JPEG", orientation=9))  # an orientation EXIF does not define
@example(content=image_bytes("TIFF", (1, 1)))
def test_any_bytes_read_as_codes_or_a_named_problem(tmp_path: Path, content: bytes) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    stored = store.put(content, "image/jpeg")
    path = store.path(stored.sha256, stored.content_type)
    assert is_sha256(stored.sha256) and path.read_bytes() == content
    assert path.is_relative_to(tmp_path / "evidence")
    decoded = barcodes.read(path, MAX_PIXELS)
    assert decoded.problem in ("", barcodes.UNREADABLE, barcodes.TOO_MANY_PIXELS)
    assert all(isinstance(code, str) and code for code in decoded.codes)


def test_a_huge_canvas_in_a_tiny_file_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(image_bytes("PNG", (4000, 4000)))
    assert barcodes.read(path, MAX_PIXELS).problem == barcodes.TOO_MANY_PIXELS
