"""A catalog that keeps up: `catalog sync` against a real local stand-in for Cloudflare's catalog API,
a running server that serves the synced models at once, `--extra-model`, and priced models served."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from emulator.accounting.pricing import load_prices
from emulator.catalog import load_catalog
from emulator.catalog.overlay import OVERLAY_FILE
from tests.conftest import Emulator, ServerFactory

REAL_TOKEN = "cfut_catalog_sync_token"
REAL_ACCOUNT = "fedcba9876543210fedcba9876543210"
NEW = "@cf/acme/brand-new-chat-1"
RETIRED = "@cf/microsoft/phi-2"
CHANGED = "@cf/meta/llama-3-8b-instruct"


def real_catalog() -> list[dict[str, Any]]:
    """The packaged catalog as Cloudflare would list it a month later: one model gone, one new, one
    re-described."""
    records = []
    for model in load_catalog():
        if not model.published or model.name == RETIRED:
            continue
        record = {**model.listing(), "schema": model.schema}
        if model.name == CHANGED:
            record["description"] = "Re-described upstream."
        records.append(record)
    donor = load_catalog().get("@cf/meta/llama-3.1-8b-instruct")
    assert donor is not None
    records.append(
        {**donor.listing(), "id": "0000-new", "name": NEW, "description": "New", "schema": donor.schema}
    )
    return records


class CatalogUpstream:
    def __init__(self) -> None:
        self.records = {r["name"]: r for r in real_catalog()}
        self.requests: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/client/v4/accounts/{account}/ai/models/search", self.search)
        app.router.add_get("/client/v4/accounts/{account}/ai/models/schema", self.schema)
        return app

    def _refused(self, request: web.Request) -> web.Response | None:
        self.requests.append(request.path_qs)
        if request.headers.get("Authorization") != f"Bearer {REAL_TOKEN}":
            return web.json_response(
                {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}, status=401
            )
        if request.match_info["account"] != REAL_ACCOUNT:
            return web.json_response(
                {"success": False, "errors": [{"code": 7003, "message": "No route"}]}, status=404
            )
        return None

    async def search(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        per_page, page = int(request.query["per_page"]), int(request.query["page"])
        listing = [{k: v for k, v in r.items() if k != "schema"} for r in self.records.values()]
        chunk = listing[(page - 1) * per_page : page * per_page]
        info = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(listing)}
        return web.json_response(
            {"success": True, "errors": [], "messages": [], "result": chunk, "result_info": info}
        )

    async def schema(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        record = self.records[request.query["model"]]
        return web.json_response({"success": True, "errors": [], "messages": [], "result": record["schema"]})


@pytest.fixture
async def catalog_upstream() -> Any:
    upstream = CatalogUpstream()
    runner = web.AppRunner(upstream.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream.base = f"http://127.0.0.1:{runner.addresses[0][1]}"  # type: ignore[attr-defined]
    yield upstream
    await runner.cleanup()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "emulator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


async def test_sync_writes_the_overlay_and_a_running_server_serves_it_at_once(
    catalog_upstream: Any, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    emu = await make_emulator(data_dir=data)
    before = await emu.run(NEW, {"prompt": "hi"})
    assert before.status == 400 and (await before.json())["errors"][0]["code"] == 5007

    env = {"CLOUDFLARE_API_TOKEN": REAL_TOKEN, "CLOUDFLARE_ACCOUNT_ID": REAL_ACCOUNT}
    out = await asyncio.to_thread(
        cli, "catalog", "sync", "--upstream", catalog_upstream.base, "--data-dir", str(data), env=env
    )
    assert out.returncode == 0, out.stderr
    assert "1 added, 1 removed, 1 changed" in out.stdout
    assert f"  + {NEW}" in out.stdout and f"  - {RETIRED}" in out.stdout and f"  ~ {CHANGED}" in out.stdout
    assert REAL_TOKEN not in out.stdout
    overlay = json.loads((data / OVERLAY_FILE).read_text())
    assert overlay["removed"] == [RETIRED] and {m["name"] for m in overlay["models"]} == {NEW, CHANGED}
    assert any("per_page=100&page=2" in r for r in catalog_upstream.requests)  # every page was read

    await asyncio.sleep(1.2)  # the server looks at the overlay file at most once a second
    answer = await emu.run(NEW, {"prompt": "hi"})
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["result"]["response"]
    gone = await emu.run(RETIRED, {"prompt": "hi"})
    assert (await gone.json())["errors"][0]["code"] == 5007
    listing = await emu.session.get(
        f"{emu.ai}/models/search?search=brand-new", headers={"Authorization": "Bearer t"}
    )
    assert [m["name"] for m in (await listing.json())["result"]] == [NEW]
    described = await emu.session.get(
        f"{emu.ai}/models/search?search=llama-3-8b-instruct", headers={"Authorization": "Bearer t"}
    )
    assert "Re-described upstream." in [m["description"] for m in (await described.json())["result"]]


def test_sync_needs_a_token_and_reports_refusals(tmp_path: Path) -> None:
    out = cli(
        "catalog",
        "sync",
        "--data-dir",
        str(tmp_path),
        env={"CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_ACCOUNT_ID": "x"},
    )
    assert out.returncode == 2 and "--token" in out.stderr


async def test_sync_with_a_wrong_token_fails_with_the_answer(catalog_upstream: Any, tmp_path: Path) -> None:
    env = {"CLOUDFLARE_API_TOKEN": "wrong", "CLOUDFLARE_ACCOUNT_ID": REAL_ACCOUNT}
    out = await asyncio.to_thread(
        cli, "catalog", "sync", "--upstream", catalog_upstream.base, "-o", str(tmp_path / "o.json"), env=env
    )
    assert out.returncode == 1 and "answered 401" in out.stderr and "Authentication error" in out.stderr
    assert not (tmp_path / "o.json").exists()


async def test_extra_model_is_served_by_its_task(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(
        extra_models=["@cf/acme/embed-1=text-embeddings", "@cf/acme/chat-1=Text Generation"]
    )
    chat = await emu.run("@cf/acme/chat-1", {"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status == 200 and (await chat.json())["result"]["response"]
    vectors = await emu.run("@cf/acme/embed-1", {"text": ["a", "b"]})
    assert vectors.status == 200 and len((await vectors.json())["result"]["data"]) == 2


def test_extra_model_with_an_unknown_task_is_refused_at_start() -> None:
    out = cli("serve", "--port", "0", "--extra-model", "@cf/acme/x=teleportation")
    assert out.returncode == 2 and "no task 'teleportation'" in out.stderr and "Text Generation" in out.stderr


async def test_every_priced_model_is_served(emulator: Emulator) -> None:
    """The pricing data and the catalog agree: a model with a price answers (none is listed retired)."""
    prices = load_prices()
    retired = set(
        json.loads((Path(__file__).parent.parent / "emulator/accounting/data/prices.json").read_text()).get(
            "retired", []
        )
    )
    unserved = [name for name in prices.models if load_catalog().get(name) is None and name not in retired]
    assert unserved == []
    answer = await emulator.run("@cf/meta/llama-3.1-8b-instruct-fp8-fast", {"prompt": "hi"})
    assert answer.status == 200  # the README's cost table prices this model
