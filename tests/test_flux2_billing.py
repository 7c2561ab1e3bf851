"""FLUX.2 over real multipart HTTP: input images are billed in 512×512 tiles, as the pricing table says."""

from __future__ import annotations

import aiohttp

from emulator.fakes.images import png
from tests.conftest import AUTH, Emulator

KLEIN = "@cf/black-forest-labs/flux-2-klein-4b"


async def _neurons(emulator: Emulator, image: bytes | None) -> float:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("prompt", "a lighthouse")
    form.add_field("width", "1280")
    form.add_field("height", "720")
    if image is not None:
        form.add_field("input_image_0", image, filename="in.png", content_type="image/png")
    resp = await emulator.session.post(emulator.run_url(KLEIN), data=form, headers=AUTH)
    assert resp.status == 200, await resp.text()
    return float(resp.headers["cf-ai-neurons"])


async def test_klein_bills_output_and_input_tiles(emulator: Emulator) -> None:
    without = await _neurons(emulator, None)
    assert without == 104.20  # ceil(1280*720 / 512²) = 4 output tiles × 26.05, the real figure
    with_image = await _neurons(emulator, png(1024, 1024, seed=1))
    assert round(with_image - without, 2) == round(4 * 5.37, 2)  # a 1024² input is 4 input tiles
