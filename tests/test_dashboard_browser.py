"""The dashboard in a real browser: playwright drives the system Chromium against a live emulator."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from emulator.control.dashboard.chart import fmt_neurons
from tests.conftest import TOKEN, Emulator, ServerFactory

CHROMIUM = os.environ.get("WORKERS_AI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]
if async_playwright is None or not Path(CHROMIUM).exists():
    pytest.skip(
        "browser tests skipped: they need the playwright package and Chromium at /usr/bin/chromium "
        "(apt-get install chromium; .ci/run does it)",
        allow_module_level=True,
    )

# As root Chromium needs --no-sandbox; the rest keep it off a network it has no business calling.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
LLAMA = "@cf/meta/llama-3.1-8b-instruct"
EMBED = "@cf/baai/bge-base-en-v1.5"
FLUX = "@cf/black-forest-labs/flux-1-schnell"
WAIT = 8000  # ms: polling runs every second, so anything shows within two polls on a slow runner
LAPTOP = {"width": 1366, "height": 768}

# WCAG contrast of each element's text against the first opaque background behind it.
CONTRAST_JS = """
(selectors) => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const sel of selectors) {
    for (const el of document.querySelectorAll(sel)) {
      if (!el.textContent.trim() || el.offsetParent === null) continue;
      const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
      out.push([sel, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
    }
  }
  return out;
}
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        await chromium.close()


async def open_dashboard(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport=LAPTOP)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda req: None if req.url.startswith(url.split("/__emulator__")[0])
            or req.url.startswith("data:") else problems.append(f"external request {req.url}"))
    await page.goto(url)
    return page, problems


async def usage(emu: Emulator) -> Any:
    async with emu.session.get(f"{emu.base}/__emulator__/usage") as r:
        return await r.json()


async def test_live_numbers_detail_view_and_reset(
    emulator: Emulator, browser: Browser, tmp_path: Path
) -> None:
    page, problems = await open_dashboard(browser, f"{emulator.base}/__emulator__/")
    await expect(page.locator("#live")).to_have_text("Live: refreshes every second.", timeout=WAIT)
    await expect(page.locator("#neurons")).to_have_text("0")
    await expect(page.locator("#requests tbody")).to_contain_text("No requests yet.")

    # Calls from real clients while the page is open: the OpenAI SDK and plain aiohttp.
    client = openai.AsyncOpenAI(base_url=f"{emulator.ai}/v1", api_key=TOKEN, max_retries=0)
    await client.chat.completions.create(model=LLAMA, messages=[{"role": "user", "content": "hi"}])
    await client.embeddings.create(model=EMBED, input=["a", "b"])
    await client.close()
    assert (await emulator.run(FLUX, {"prompt": "a lighthouse"})).status == 200
    assert (await emulator.run(LLAMA, {"nope": 1})).status == 400

    report = await usage(emulator)
    await expect(page.locator("#neurons")).to_have_text(fmt_neurons(report["neurons"]), timeout=WAIT)
    await expect(page.locator("#requests tbody tr")).to_have_count(4, timeout=WAIT)
    await expect(page.locator("#models tbody tr")).to_have_count(3)
    for m in report["models"]:
        row = page.locator("#models tbody tr", has=page.locator(f'th:text-is("{m["model"]}")'))
        await expect(row.locator("td").nth(1)).to_have_text(fmt_neurons(m["neurons"]))
    await expect(page.locator("#dollars")).to_have_text(f"${report['dollars']:,.4f}")
    await expect(page.locator("#requests tbody tr").first.locator(".status")).to_have_text("400 · 5006")
    await expect(page.locator("#hourly rect")).to_have_count(24)

    # The detail of the failed call: its body and the error envelope, without leaving the page.
    await page.locator("#requests tbody tr").first.get_by_role("link").click()
    await expect(page.locator("#detail-h")).to_have_text("Request 4")
    await expect(page.locator("#detail .error-line")).to_contain_text("Error 5006")
    await expect(page.locator("#detail pre.body")).to_contain_text('"nope": 1')
    assert page.url.endswith("?request=4")
    # The image call shows a thumbnail.
    await page.locator("#requests tbody tr").nth(1).get_by_role("link").click()
    await expect(page.locator("#detail img.thumb")).to_be_visible(timeout=WAIT)
    assert await page.locator("#detail img.thumb").evaluate("img => img.naturalWidth") > 0

    # Fits a laptop screen, and every piece of text meets WCAG AA contrast.
    assert await page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
    ratios = await page.evaluate(CONTRAST_JS, ["h1", "h2", "p", "dt", "dd", "th", "td", "a", "li",
                                               "button", "caption", "blockquote", "pre"])
    assert ratios and [r for r in ratios if r[1] < 4.5] == []
    await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # Reset from the page: zeros everywhere, and the control plane agrees.
    await page.get_by_role("button", name="Reset usage, log, stubs and faults").click()
    await expect(page.locator("#neurons")).to_have_text("0", timeout=WAIT)
    await expect(page.locator("#requests tbody")).to_contain_text("No requests yet.")
    await expect(page.locator("#models tbody")).to_contain_text("No calls yet today.")
    await expect(page.locator("#live")).to_contain_text("Reset done")
    assert (await usage(emulator))["neurons"] == 0
    assert problems == []


async def test_wall_stubs_and_faults_show_up_live(make_emulator: ServerFactory, browser: Browser) -> None:
    emu = await make_emulator(daily_neurons=10)
    page, problems = await open_dashboard(browser, f"{emu.base}/__emulator__/")
    await expect(page.locator("#wall")).to_have_class("wall ok", timeout=WAIT)
    control = f"{emu.base}/__emulator__"
    await emu.session.post(f"{control}/faults", json={"kind": "capacity", "model": EMBED, "nth": 1})
    await emu.session.post(f"{control}/stubs", json={"model": "@cf/qwen/*", "text": "canned"})
    await expect(page.locator("#faults")).to_contain_text("capacity 3040/429", timeout=WAIT)
    await expect(page.locator("#stubs")).to_contain_text('text "canned"')
    assert (await emu.run(EMBED, {"text": "x"})).status == 429
    await expect(page.locator("#requests tbody tr").first).to_contain_text("fault", timeout=WAIT)
    while (await emu.run(LLAMA, {"prompt": "fill the day"})).status == 200:
        pass
    await expect(page.locator("#wall")).to_have_class("wall full", timeout=WAIT)
    await expect(page.locator("#walls")).to_have_text("1")
    await expect(page.locator("#wall-note")).to_contain_text("refused with error 4006")
    await expect(page.locator("#pct")).to_have_text("100%")
    assert await page.locator("#bar").evaluate("b => b.value === b.max")
    # The failed-only filter keeps the fault and the refusal, not the successful calls.
    await page.get_by_label("failed only").check()
    await expect(page.locator("#requests tbody tr")).to_have_count(2, timeout=WAIT)
    assert problems == []


async def test_token_prompt_then_live_page(make_emulator: ServerFactory, browser: Browser) -> None:
    emu = await make_emulator(token=TOKEN)
    page, problems = await open_dashboard(browser, f"{emu.base}/__emulator__/")
    await page.get_by_label("Token").fill(TOKEN)
    await page.get_by_role("button", name="Open the dashboard").click()
    await expect(page.locator("#live")).to_have_text("Live: refreshes every second.", timeout=WAIT)
    await emu.run(LLAMA, {"prompt": "with a token"})
    await expect(page.locator("#requests tbody tr")).to_have_count(1, timeout=WAIT)
    # The first load answered 401 (the prompt): that is the only error the console may show.
    assert [p for p in problems if "401" not in p] == []


async def test_live_page_reads_as_a_fresh_load_and_escapes_user_text(
    emulator: Emulator, browser: Browser
) -> None:
    """The script swaps in the server's parts: after live updates the page reads exactly as a reload."""
    page, problems = await open_dashboard(browser, f"{emulator.base}/__emulator__/")
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await expect(page.locator("#live")).to_have_text("Live: refreshes every second.", timeout=WAIT)
    hostile = "<img src=x onerror=alert(1)>"
    await emulator.session.post(f"{emulator.base}/__emulator__/stubs",
                                json={"name": hostile, "model": EMBED, "text": hostile})
    await emulator.run(LLAMA, {"prompt": hostile})
    await emulator.run(EMBED, {"text": "x"})
    await expect(page.locator("#requests tbody tr")).to_have_count(2, timeout=WAIT)
    await page.locator("#requests tbody tr").nth(1).get_by_role("link").click()
    await expect(page.locator("#detail-h")).to_have_text("Request 1")
    await expect(page.locator("#requests tbody tr.selected")).to_have_attribute("data-id", "1")
    await expect(page.locator("#stubs")).to_contain_text(f"stub-1 ({hostile})")
    await expect(page.locator("#detail pre.body")).to_contain_text(hostile)
    assert await page.locator("main img:not(.thumb)").count() == 0 and dialogs == []
    live = await page.locator("main").inner_text()
    await page.reload()
    assert await page.locator("main").inner_text() == live
    assert problems == []


async def test_counts_match_rows_and_a_used_up_fault_leaves_active_live(
    make_emulator: ServerFactory, browser: Browser
) -> None:
    emu = await make_emulator()
    page, problems = await open_dashboard(browser, f"{emu.base}/__emulator__/")
    await expect(page.locator("#live")).to_have_text("Live: refreshes every second.", timeout=WAIT)
    capacity_once = {"kind": "capacity", "model": EMBED, "times": 1}
    await emu.session.post(f"{emu.base}/__emulator__/faults", json=capacity_once)
    await expect(page.locator("#faults")).to_contain_text("fault-1: capacity 3040/429", timeout=WAIT)
    await expect(page.locator("#faults-used")).to_have_count(0)
    assert (await emu.run(EMBED, {"text": "x"})).status == 429
    # Its one time used, the fault moves from Active to Used-up without a reload.
    await expect(page.locator("#faults")).to_have_text("none", timeout=WAIT)
    await expect(page.locator("#faults-used")).to_contain_text("fault-1: capacity 3040/429")
    await expect(page.locator("#faults-used")).to_contain_text("fired 1 of 1 calls")
    for _ in range(27):
        assert (await emu.run(EMBED, {"text": "x"})).status == 200
    assert (await emu.run(LLAMA, {"nope": 1})).status == 400
    await expect(page.locator("#latest-count")).to_have_text(
        "(newest first: showing 25 of 29 calls in the log)", timeout=WAIT)
    await expect(page.locator("#requests tbody tr")).to_have_count(25)
    # The charged calls and errors above the table are the totals of its rows.
    report = await usage(emu)
    await expect(page.locator("#requests-total")).to_have_text(str(report["requests"]))
    await expect(page.locator("#models-total td").first).to_have_text(str(report["requests"]))
    cells = await page.locator("#models tbody tr td:nth-of-type(1)").all_inner_texts()
    assert sum(int(c) for c in cells) == report["requests"] == 27
    await page.get_by_label("failed only").check()
    await expect(page.locator("#latest-count")).to_have_text(
        "(newest first: showing 2 of 2 failed calls in the log)", timeout=WAIT)
    await expect(page.locator("#requests tbody tr")).to_have_count(2)
    assert problems == []
