"""Seeded, decodable fake images (PNG/JPEG) and a header sniffer for uploaded images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from emulator.fakes.seed import rng

_MAX_SIDE = 16384


def _pixels(width: int, height: int, seed: int) -> np.ndarray:
    """(height, width * 3) uint8 interleaved RGB rows: a seeded two-axis gradient plus seeded bands
    and boxes.

    Each channel is row_ramp[y] + col_ramp[x]. Rows are gathered from a table of the distinct ones,
    each one contiguous copy: adding the ramps per channel along a stride of 3, or broadcasting over
    a (h, w, 3) array (numpy then iterates in threes), is several times slower.
    """
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise ValueError(f"image size out of range: {width}x{height}")
    gen = rng(seed)
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)
    # Both ramps stay within 0..127 so the uint8 sum never wraps.
    ends = gen.integers(0, 128, size=(4, 3, 1)).astype(np.float32)
    cols = (ends[0] + (ends[1] - ends[0]) * xs).astype(np.uint8)  # (3, width)
    rows = (ends[2] + (ends[3] - ends[2]) * ys).astype(np.uint8)  # (3, height)
    # Row ramps are monotonic and take at most 128 values each, so the rows come in runs of equal
    # ones: each run's row is built once, then copied down the run.
    changes = np.any(rows[:, 1:] != rows[:, :-1], axis=0)
    run = np.concatenate(([0], np.cumsum(changes)))
    starts = np.concatenate(([0], np.flatnonzero(changes) + 1))
    pixels = (np.tile(rows.T[starts], (1, width)) + cols.T.reshape(-1))[run]
    for _ in range(int(gen.integers(2, 5))):
        colour = gen.integers(0, 256, size=(3, 1, 1)).astype(np.uint8).reshape(3)
        if gen.random() < 0.5:
            # A horizontal or vertical band across the whole picture.
            horizontal = gen.random() < 0.5
            lo, hi = sorted(gen.integers(0, height if horizontal else width, size=2).tolist())
            thickness = max(1, (hi - lo) // 3)
            if horizontal:
                pixels[lo : lo + thickness, :] = np.tile(colour, width)
            else:
                stop = min(width, lo + thickness)
                pixels[:, lo * 3 : stop * 3] = np.tile(colour, stop - lo)
        else:
            x0, x1 = sorted(gen.integers(0, width + 1, size=2).tolist())
            y0, y1 = sorted(gen.integers(0, height + 1, size=2).tolist())
            box = pixels[y0:y1, x0 * 3 : x1 * 3]
            box //= 2
            box += np.tile(colour // 2, x1 - x0)
    return pixels


def _image(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(_pixels(width, height, seed).reshape(height, width, 3))  # uint8 (h, w, 3): RGB


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def png(width: int, height: int, seed: int) -> bytes:
    """A width×height RGB PNG whose picture is fixed by `seed` (no metadata, so bytes are stable).

    Encoded here rather than by Pillow: every row but the first carries PNG's Up filter (the
    difference to the row above), computed by numpy in one pass, and zlib level 1 deflates the
    result. Gradients make those differences nearly constant, so a 1024² picture compresses to
    ~20 KB in a third of the time Pillow's per-row adaptive filtering took.
    """
    pixels = _pixels(width, height, seed)
    rows = np.empty((height, width * 3 + 1), dtype=np.uint8)
    rows[:, 0] = 2  # Up
    rows[0, 0] = 0  # None: the first row has nothing above it
    rows[0, 1:] = pixels[0]
    np.subtract(pixels[1:], pixels[:-1], out=rows[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header),
                     _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)), _chunk(b"IEND", b"")))


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
