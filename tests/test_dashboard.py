"""The dashboard over plain HTTP: server-rendered numbers, no external URLs, token, detail and summaries."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from typing import Any

import mutagen.mp3
import pytest

from emulator.control.dashboard.chart import fmt_neurons, hourly_svg
from emulator.control.dashboard.summary import mp3_seconds
from emulator.control.dashboard.views import level, percent, source_label
from emulator.fakes import audio
from tests.conftest import TOKEN, Emulator, ServerFactory

LLAMA = "@cf/meta/llama-3.1-8b-instruct"
EMBED = "@cf/baai/bge-base-en-v1.5"
FLUX = "@cf/black-forest-labs/flux-1-schnell"
AURA = "@cf/deepgram/aura-1"
PAGE = "/__emulator__/"
# Anything a browser would fetch from elsewhere: scheme-relative or absolute URLs.
EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
SVG_NS = "http://www.w3.org/2000/svg"  # a namespace name in the standalone SVG, never fetched


async def get(emu: Emulator, path: str, status: int = 200, **headers: str) -> tuple[str, Any]:
    async with emu.session.get(emu.base + path, headers=headers) as r:
        assert r.status == status, await r.text()
        return await r.text(), r


async def control(emu: Emulator, path: str, **headers: str) -> Any:
    async with emu.session.get(f"{emu.base}/__emulator__/{path}", headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_page_is_html_with_the_numbers_rendered_by_the_server(emulator: Emulator) -> None:
    for prompt in ("one", "two"):
        assert (await emulator.run(LLAMA, {"prompt": prompt})).status == 200
    assert (await emulator.run(EMBED, {"text": ["a", "b"]})).status == 200
    assert (await emulator.run(LLAMA, {"nope": 1})).status == 400
    usage = await control(emulator, "usage")
    html, response = await get(emulator, PAGE)
    assert response.content_type == "text/html" and response.charset == "utf-8"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    # The same numbers GET usage gives, present without any script running.
    assert f'<strong id="neurons">{fmt_neurons(usage["neurons"])}</strong>' in html
    assert f'id="requests-total">{usage["requests"]}<' in html
    assert f'${usage["dollars"]:,.4f}' in html
    assert "free: 10,000 neurons a day, then 4006" in html
    assert f'datetime="{usage["resets_at"]}"' in html
    for m in usage["models"]:
        assert f'<th scope="row" class="model">{m["model"]}</th>' in html
        assert fmt_neurons(m["neurons"]) in html
    # Semantic structure: landmarks, captions, header cells, a labelled progress element.
    for tag in ("<header", "<main", "<section", "<caption", 'scope="col"', "<progress", 'aria-label="'):
        assert tag in html, tag
    assert 'class="wall ok"' in html and "<svg" in html and html.count("<rect") == 24
    # The latest requests, newest first, including the failed one with its error code.
    rows = re.findall(r'<tr data-id="(\d+)"', html)
    assert rows == ["4", "3", "2", "1"]
    assert "400 · 5006" in html and "rejected" in html


async def test_no_external_urls_in_page_script_style_or_chart(emulator: Emulator) -> None:
    await emulator.run(LLAMA, {"prompt": "see https://example.com/x"})  # user data is not the page's
    await emulator.session.post(f"{emulator.base}/__emulator__/reset")
    html, _ = await get(emulator, PAGE)
    js, js_response = await get(emulator, "/__emulator__/dashboard/app.js")
    css, css_response = await get(emulator, "/__emulator__/dashboard/app.css")
    svg, svg_response = await get(emulator, "/__emulator__/usage/hourly.svg")
    assert js_response.content_type == "text/javascript" and css_response.content_type == "text/css"
    assert svg_response.content_type == "image/svg+xml"
    for name, text in (("html", html), ("js", js), ("css", css), ("svg", svg.replace(SVG_NS, ""))):
        assert not EXTERNAL.findall(text), (name, EXTERNAL.findall(text))
    for attr in re.findall(r'(?:src|href|action)="([^"]*)"', html):
        assert attr.startswith(("/__emulator__/", "data:")), attr
    await get(emulator, "/__emulator__/dashboard/secrets.txt", status=404)


async def test_wall_warning_then_4006_refusals(make_emulator: ServerFactory) -> None:
    probe = await make_emulator()
    await probe.run(LLAMA, {"prompt": "one"})
    one_call = (await control(probe, "usage"))["neurons"]
    # One call lands at 90% of this allowance: the warning; the second crosses; the third is refused.
    emu = await make_emulator(daily_neurons=one_call / 0.9)
    await emu.run(LLAMA, {"prompt": "one"})
    html, _ = await get(emu, PAGE)
    assert 'class="wall warn"' in html and "Near the daily wall" in html and ">90%<" in html
    await emu.run(LLAMA, {"prompt": "two"})
    assert (await emu.run(LLAMA, {"prompt": "three"})).status == 429
    html, _ = await get(emu, PAGE)
    assert 'class="wall full"' in html and "refused with error 4006" in html
    assert '<dd id="walls">1</dd>' in html and "4006 × 1" in html
    assert "429 · 4006" in html and "refused" in html


def test_levels_and_percent_at_the_edges() -> None:
    assert level(7999, 10_000) == "ok" and level(8000, 10_000) == "warn"
    assert level(9999.99, 10_000) == "warn" and level(10_000, 10_000) == "full"
    assert percent(9999.99, 10_000) == 99 and percent(10_000, 10_000) == 100


async def test_token_protected_page_prompts_and_accepts_query_token(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(token=TOKEN)
    html, _ = await get(emu, PAGE, status=401)
    assert '<form method="get"' in html and 'name="token"' in html and "--token" in html
    html, _ = await get(emu, PAGE + "?token=wrong", status=401)
    assert "is not the server" in html
    html, _ = await get(emu, PAGE + f"?token={TOKEN}")
    assert 'id="neurons"' in html
    # Links inside the page keep the token, so the no-script detail view works too.
    assert f"?token={TOKEN}&amp;failed=1" in html
    await get(emu, PAGE, Authorization=f"Bearer {TOKEN}")
    await get(emu, "/__emulator__/usage/hourly.svg", status=401)
    await get(emu, "/__emulator__/usage/hourly.svg?token=" + TOKEN)
    await get(emu, "/__emulator__/dashboard/app.js")  # the script holds no data: no token needed
    await get(emu, "/__emulator__/requests/1", status=401)


async def test_detail_view_without_script_and_json_route(emulator: Emulator) -> None:
    await emulator.run(LLAMA, {"prompt": "tell me a story"})
    entry = await control(emulator, "requests/1")
    assert entry["body"] == {"prompt": "tell me a story"} and entry["source"] == "mock"
    assert entry["response"]["kind"] == "json" and entry["response"]["text"]
    html, _ = await get(emulator, PAGE + "?request=1")
    assert '<h2 id="detail-h">Request 1</h2>' in html
    assert "tell me a story" in html and entry["response"]["text"][:40] in html
    html, _ = await get(emulator, PAGE + "?request=99")
    assert "no longer in the log" in html
    async with emulator.session.get(f"{emulator.base}/__emulator__/requests/99") as r:
        assert r.status == 404


async def test_response_summaries_text_image_audio_vectors_errors_stub(emulator: Emulator) -> None:
    await emulator.run(FLUX, {"prompt": "a cat"})
    speech = await emulator.run(AURA, {"text": "hello world, how are you today"})
    mp3 = await speech.read()
    await emulator.run(EMBED, {"text": ["a", "b", "c"]})
    await emulator.run(LLAMA, {"nope": 1})
    stub = {"model": LLAMA, "text": "stubbed!"}
    await emulator.session.post(f"{emulator.base}/__emulator__/stubs", json=stub)
    await emulator.run(LLAMA, {"prompt": "hi"})
    log = (await control(emulator, "requests"))["requests"]
    image, voice, vectors, error, stubbed = (e["response"] for e in log)
    assert voice["kind"] == "audio" and voice["content_type"] == "audio/mpeg"
    assert voice["audio_seconds"] == pytest.approx(mutagen.mp3.MP3(io.BytesIO(mp3)).info.length, abs=0.01)
    assert vectors["vectors"] == [3, 768]
    assert error["kind"] == "error" and error["errors"][0]["code"] == 5006
    assert stubbed["text"] == "stubbed!" and log[-1]["source"] == "stub"
    # The thumbnail is made off the request path; it appears shortly after.
    for _ in range(50):
        image = (await control(emulator, "requests/1"))["response"]
        if "thumbnail" in image:
            break
        await asyncio.sleep(0.05)
    assert image["kind"] == "image" and image["thumbnail"].startswith("data:image/jpeg;base64,")
    assert base64.b64decode(image["thumbnail"].split(",", 1)[1])[:2] == b"\xff\xd8"
    html, _ = await get(emulator, PAGE + "?request=1")
    assert 'alt="Thumbnail of the generated image"' in html
    html, _ = await get(emulator, PAGE + "?request=2")
    assert f"{voice['audio_seconds']:.2f} s of audio" in html


async def test_failed_only_filter_without_script(emulator: Emulator) -> None:
    await emulator.run(LLAMA, {"prompt": "ok"})
    await emulator.run(LLAMA, {"nope": 1})
    html, _ = await get(emulator, PAGE + "?failed=1")
    assert re.findall(r'<tr data-id="(\d+)"', html) == ["2"]


async def test_hourly_json_svg_and_usage_agree(emulator: Emulator) -> None:
    await emulator.run(LLAMA, {"prompt": "x"})
    await emulator.run(EMBED, {"text": "x"})
    hourly = await control(emulator, "usage/hourly")
    usage = await control(emulator, "usage")
    assert [h["hour"] for h in hourly["hours"]] == list(range(24)) and hourly["day"] == usage["day"]
    assert sum(h["neurons"] for h in hourly["hours"]) == pytest.approx(usage["neurons"])
    svg = hourly_svg([(h["hour"], h["neurons"]) for h in hourly["hours"]])
    assert svg.count("<rect") == 24 and f"{fmt_neurons(usage['neurons'])} neurons today" in svg
    assert "No neurons used yet today." in hourly_svg([(h, 0.0) for h in range(24)])


async def test_replay_miss_is_labelled(emulator: Emulator, tmp_path: Any) -> None:
    async with emulator.session.post(
        f"{emulator.base}/__emulator__/mode", json={"mode": "replay", "cassette": "none-recorded"}
    ) as r:
        assert r.status == 200, await r.text()
    assert (await emulator.run(LLAMA, {"prompt": "x"})).status == 404
    [entry] = (await control(emulator, "requests"))["requests"]
    assert entry["source"] == "replay" and entry["error_code"] == 7404 and source_label(entry) == "miss"
    assert source_label({**entry, "status": 200, "error_code": None}) == "hit"


async def test_no_dashboard_without_control_plane(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(control_plane=False)
    async with emu.session.get(emu.base + PAGE) as r:
        assert r.status != 200 and "usage dashboard" not in await r.text()


def test_mp3_length_matches_mutagen() -> None:
    for seconds in (0.3, 2.0, 9.5):
        data = audio.mp3(seconds, seed=7)
        assert mp3_seconds(data) == pytest.approx(mutagen.mp3.MP3(io.BytesIO(data)).info.length, abs=1e-3)
    assert mp3_seconds(b"not audio at all") is None


async def parts_of(emu: Emulator, query: str = "") -> dict[str, str]:
    async with emu.session.get(f"{emu.base}/__emulator__/dashboard/parts{query}") as r:
        assert r.status == 200, await r.text()
        parts: dict[str, str] = (await r.json())["parts"]
        return parts


async def test_the_page_is_its_parts_drawn_once_by_the_server(emulator: Emulator) -> None:
    """app.js swaps in what `dashboard/parts` renders; the page on load is made of the same parts."""
    await emulator.run(LLAMA, {"prompt": "one"})
    await emulator.run(LLAMA, {"nope": 1})
    await emulator.session.post(f"{emulator.base}/__emulator__/faults", json={"kind": "capacity", "nth": 9})
    for query in ("", "?failed=1", "?request=2"):
        html, _ = await get(emulator, PAGE + query)
        parts = await parts_of(emulator, query)
        assert set(parts) == {"meta", "today", "chart", "models", "setup", "latest", "detail"}
        for name, part in parts.items():
            assert f'data-part="{name}">{part}<' in html
    assert 'class="bad selected"' in (await parts_of(emulator, "?request=2"))["latest"]
    # The script holds no words or numbers of its own: every string the page shows comes from views.py.
    js, _ = await get(emulator, "/__emulator__/dashboard/app.js")
    for rendered in ("neurons left", "createElement", "faultText", "stubText", "wallNote", "toFixed"):
        assert rendered not in js, rendered
    async with emulator.session.get(f"{emulator.base}/__emulator__/dashboard/parts",
                                    headers={"Accept": "application/json"}) as r:
        assert r.headers["Cache-Control"] == "no-store"


async def test_user_text_is_escaped_in_the_page_and_its_parts(emulator: Emulator) -> None:
    hostile = '<img src=x onerror="alert(1)">'
    await emulator.session.post(f"{emulator.base}/__emulator__/stubs",
                                json={"name": hostile, "model": LLAMA, "text": hostile})
    await emulator.session.post(f"{emulator.base}/__emulator__/faults",
                                json={"name": hostile, "kind": "capacity", "prompt": hostile})
    await emulator.run(LLAMA, {"prompt": hostile})
    html, _ = await get(emulator, PAGE + "?request=1")
    parts = await parts_of(emulator, "?request=1")
    for text in (html, *parts.values()):
        assert "<img src=x" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in parts["setup"]
    assert "&lt;img src=x" in parts["detail"]


async def test_header_counts_are_the_totals_of_the_rows_shown(make_emulator: ServerFactory) -> None:
    probe = await make_emulator()
    await probe.run(EMBED, {"text": "x"})
    one_call = (await control(probe, "usage"))["neurons"]
    emu = await make_emulator(daily_neurons=one_call * 27.5)  # the 28th call meets the wall
    for n in range(28):
        assert (await emu.run(EMBED, {"text": "x"})).status == 200, n
    assert (await emu.run(EMBED, {"text": "x"})).status == 429
    assert (await emu.run(LLAMA, {"nope": 1})).status == 400  # rejected before any charge
    usage = await control(emu, "usage")
    parts = await parts_of(emu)
    # Charged calls, errors and 4006 refusals: the per-model table's totals, in a total row.
    total = re.search(r'<tr id="models-total">(.*?)</tr>', parts["models"], re.S)
    assert total is not None
    cells = re.findall(r'<td class="num">([^<]*)</td>', total.group(1))
    assert cells[0] == str(usage["requests"]) == "28" and cells[3] == str(usage["errors"]) == "0"
    assert "4006 × 1" in total.group(1)
    assert re.search(rf'id="requests-total">{usage["requests"]}<', parts["today"])
    assert re.search(r'id="walls">1<', parts["today"])
    model_row = r'<th scope="row" class="model">[^<]*</th><td class="num">(\d+)<'
    row_requests = [int(n) for n in re.findall(model_row, parts["models"])]
    assert sum(row_requests) == usage["requests"]
    # The log's caption says how many of its calls the table shows.
    assert len(re.findall(r'<tr data-id=', parts["latest"])) == 25
    assert "showing\n 25 of 30 calls in the log" in parts["latest"]
    failed = await parts_of(emu, "?failed=1")
    assert len(re.findall(r'<tr data-id=', failed["latest"])) == 2
    assert "showing\n 2 of 2 failed calls in the log" in failed["latest"]


async def test_a_used_up_fault_or_stub_is_not_listed_as_active(emulator: Emulator) -> None:
    control_url = f"{emulator.base}/__emulator__"
    capacity_once = {"kind": "capacity", "model": EMBED, "times": 1}
    await emulator.session.post(f"{control_url}/faults", json=capacity_once)
    await emulator.session.post(f"{control_url}/faults", json={"kind": "timeout", "model": EMBED, "nth": 3})
    await emulator.session.post(f"{control_url}/stubs", json={"model": LLAMA, "text": "once", "times": 1})
    setup = (await parts_of(emulator))["setup"]
    assert "Active faults: 2" in setup and "Active stubs: 1" in setup and "Used-up" not in setup
    assert (await emulator.run(EMBED, {"text": "x"})).status == 429  # the capacity fault's one time
    assert (await emulator.run(LLAMA, {"prompt": "x"})).status == 200  # the stub's one answer
    faults = (await control(emulator, "faults"))["faults"]
    assert [f["exhausted"] for f in faults] == [True, False]
    assert [s["exhausted"] for s in (await control(emulator, "stubs"))["stubs"]] == [True]
    setup = (await parts_of(emulator))["setup"]
    active, used = setup.split('<ul id="faults">')[1].split('<ul id="faults-used">')
    assert "fault-1" not in active and "fault-2: timeout" in active and "Active faults: 1" in setup
    assert "fault-1: capacity" in used and "at most 1 times" in used and "Used-up faults" in setup
    assert "Active stubs: 0" in setup and 'stubs-used"><li>stub-1' in setup
    # nth=3 is used up once the third matching call has passed.
    for _ in range(2):
        await emulator.run(EMBED, {"text": "x"})
    setup = (await parts_of(emulator))["setup"]
    assert "Active faults: 0" in setup and "fault-2: timeout" in setup.split('<ul id="faults-used">')[1]


@pytest.mark.parametrize("bad", ["abc", "9999-12-31", "9" * 5000], ids=["abc", "9999-12-31", "5000-digits"])
async def test_hourly_svg_reads_day_as_usage_hourly_does(emulator: Emulator, bad: str) -> None:
    assert (await emulator.run(LLAMA, {"prompt": "one"})).status == 200
    hourly = await control(emulator, "usage/hourly")
    today = hourly["day"]
    for path in ("/__emulator__/usage/hourly.svg", f"/__emulator__/usage/hourly.svg?day={today}"):
        svg, _ = await get(emulator, path)
        assert "Neurons per UTC hour, today" in svg and "neurons today; busiest hour" in svg
    svg, _ = await get(emulator, "/__emulator__/usage/hourly.svg?day=2001-02-03")
    assert "Neurons per UTC hour, 2001-02-03" in svg and "No neurons used on 2001-02-03." in svg
    async with emulator.session.get(f"{emulator.base}/__emulator__/usage/hourly?day={bad}") as r:
        assert r.status == 400
        expected = await r.json()
    async with emulator.session.get(f"{emulator.base}/__emulator__/usage/hourly.svg?day={bad}") as r:
        assert r.status == 400 and await r.json() == expected
    assert expected["success"] is False and "`day` must be" in expected["error"]
