"""Tests for the fake image generators and the image header sniffer."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emulator.fakes.images import _image, image_info, jpeg, png


@pytest.mark.parametrize(("width", "height"), [(256, 256), (512, 384), (300, 1000), (1, 1), (2048, 256)])
def test_png_decodes_at_requested_size(width: int, height: int) -> None:
    data = png(width, height, 3)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == (width, height)
        assert image.mode == "RGB"
        image.load()
    assert image_info(data) == ("png", width, height)


def test_png_2048_square() -> None:
    data = png(2048, 2048, 1)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (2048, 2048)


@pytest.mark.parametrize(("width", "height"), [(256, 256), (768, 512), (2048, 300)])
def test_jpeg_decodes_at_requested_size(width: int, height: int) -> None:
    data = jpeg(width, height, 5)
    assert data.startswith(b"\xff\xd8\xff")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert image.size == (width, height)
        image.load()
    assert image_info(data) == ("jpeg", width, height)


def test_deterministic_and_seeded() -> None:
    assert png(320, 200, 9) == png(320, 200, 9)
    assert jpeg(320, 200, 9) == jpeg(320, 200, 9)
    assert jpeg(320, 200, 9, quality=50) != jpeg(320, 200, 9)
    first = np.asarray(Image.open(io.BytesIO(png(320, 200, 9))).convert("RGB"))
    second = np.asarray(Image.open(io.BytesIO(png(320, 200, 10))).convert("RGB"))
    # Visibly different, not just a few pixels.
    differing = int((first != second).any(axis=2).sum())
    assert differing > 0.5 * 320 * 200


def test_no_metadata_chunks() -> None:
    data = png(64, 64, 1)
    assert b"tIME" not in data and b"tEXt" not in data


def test_bad_sizes() -> None:
    with pytest.raises(ValueError):
        png(0, 10, 1)
    with pytest.raises(ValueError):
        jpeg(10, -1, 1)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "BMP", "TIFF"])
def test_image_info_other_formats(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (33, 17), (10, 20, 30)).save(buffer, format=fmt)
    assert image_info(buffer.getvalue()) == (fmt.lower(), 33, 17)


def test_image_info_lossless_webp() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (40, 25)).save(buffer, format="WEBP", lossless=True)
    assert image_info(buffer.getvalue()) == ("webp", 40, 25)


NOT_IMAGES = [
    b"",
    b"garbage",
    b'{"prompt": "cat"}',
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"RIFF\x00\x00\x00\x00WAVEfmt ",
]


@pytest.mark.parametrize("data", NOT_IMAGES)
def test_image_info_rejects_non_images(data: bytes) -> None:
    assert image_info(data) is None


@pytest.mark.parametrize(("width", "height", "seed"), [(1024, 1024, 5), (1, 1, 3), (7, 300, 2), (300, 7, 9)])
def test_png_holds_the_same_picture_as_the_jpeg_of_its_seed(width: int, height: int, seed: int) -> None:
    # The PNG is encoded by the emulator itself (Up filter + zlib): Pillow must read it back exactly,
    # and it must be the picture the JPEG path (Pillow's encoder) starts from.
    decoded = np.asarray(Image.open(io.BytesIO(png(width, height, seed))).convert("RGB"))
    assert decoded.shape == (height, width, 3)
    assert (decoded == np.asarray(_image(width, height, seed))).all()
    assert len(np.unique(decoded.reshape(-1, 3), axis=0)) > 1 or width * height == 1
