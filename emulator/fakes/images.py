"""Seeded, decodable fake images (PNG/JPEG) and a header sniffer for uploaded images."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from emulator.fakes.seed import rng

_MAX_SIDE = 16384


def _planes(width: int, height: int, seed: int) -> np.ndarray:
    """(3, height, width) uint8 R/G/B planes: a seeded two-axis gradient plus seeded bands and boxes.

    Planar layout keeps every numpy loop running along a long contiguous row; an interleaved
    (h, w, 3) array makes numpy iterate in threes and is several times slower.
    """
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise ValueError(f"image size out of range: {width}x{height}")
    gen = rng(seed)
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)
    # Each channel is row_ramp[y] + col_ramp[x], two small ramps broadcast into the plane; both stay
    # within 0..127 so the uint8 sum never wraps.
    ends = gen.integers(0, 128, size=(4, 3, 1)).astype(np.float32)
    cols = (ends[0] + (ends[1] - ends[0]) * xs).astype(np.uint8)
    rows = (ends[2] + (ends[3] - ends[2]) * ys).astype(np.uint8)
    planes = np.add(rows[:, :, None], cols[:, None, :])
    for _ in range(int(gen.integers(2, 5))):
        colour = gen.integers(0, 256, size=(3, 1, 1)).astype(np.uint8)
        if gen.random() < 0.5:
            # A horizontal or vertical band across the whole picture.
            horizontal = gen.random() < 0.5
            lo, hi = sorted(gen.integers(0, height if horizontal else width, size=2).tolist())
            thickness = max(1, (hi - lo) // 3)
            if horizontal:
                planes[:, lo : lo + thickness, :] = colour
            else:
                planes[:, :, lo : lo + thickness] = colour
        else:
            x0, x1 = sorted(gen.integers(0, width + 1, size=2).tolist())
            y0, y1 = sorted(gen.integers(0, height + 1, size=2).tolist())
            box = planes[:, y0:y1, x0:x1]
            box //= 2
            box += colour // 2
    return planes


def _image(width: int, height: int, seed: int) -> Image.Image:
    planes = _planes(width, height, seed)
    return Image.merge("RGB", [Image.fromarray(plane, "L") for plane in planes])


def png(width: int, height: int, seed: int) -> bytes:
    """A width×height RGB PNG whose picture is fixed by `seed` (no metadata, so bytes are stable)."""
    buffer = io.BytesIO()
    # Level 1 keeps a 1024² encode well under 30 ms; smooth gradients still compress well.
    _image(width, height, seed).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def jpeg(width: int, height: int, seed: int, quality: int = 85) -> bytes:
    """A width×height baseline JPEG whose picture is fixed by `seed`."""
    buffer = io.BytesIO()
    _image(width, height, seed).save(
        buffer, format="JPEG", quality=quality, optimize=False, progressive=False
    )
    return buffer.getvalue()


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        pos += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


def image_info(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from the header, e.g. ('png', 512, 512); None when not an image."""
    size: tuple[int, int] | None = None
    kind = ""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        kind, size = "png", struct.unpack_from(">II", data, 16)
    elif data.startswith(b"\xff\xd8\xff"):
        kind, size = "jpeg", _jpeg_size(data)
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        kind, size = "gif", struct.unpack_from("<HH", data, 6)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind, size = "webp", _webp_size(data)
    elif data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack_from("<ii", data, 18)
        kind, size = "bmp", (width, abs(height))
    if size is not None and size[0] > 0 and size[1] > 0:
        return kind, int(size[0]), int(size[1])
    # Anything else (TIFF, ICO, unusual JPEG layouts…): let Pillow read just the header.
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            width, height = image.size
    except Exception:
        return None
    fmt = {"mpo": "jpeg"}.get(fmt, fmt)
    return (fmt, width, height) if fmt and width > 0 and height > 0 else None
