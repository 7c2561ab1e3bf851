"""Catalog API over real HTTP: models/search filters and paging, models/schema, tasks, authors, the SDK."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

import pytest
from cloudflare import BadRequestError, Cloudflare

from emulator.accounting.ledger import FixedClock
from emulator.catalog import load_catalog
from emulator.server.catalog_api import DEFAULT_PER_PAGE, is_deprecated
from tests.conftest import ACCOUNT, AUTH, Emulator

CATALOG = load_catalog()


def deprecated_names(today: date) -> set[str]:
    return {m.name for m in CATALOG if is_deprecated(m, today)}


async def get(emulator: Emulator, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    async with emulator.session.get(f"{emulator.ai}/{path}", params={k: str(v) for k, v in params.items()},
                                    headers=AUTH) as response:
        return response.status, await response.json()


async def test_search_pages_through_everything_once(emulator: Emulator) -> None:
    names: list[str] = []
    page = 1
    while True:
        status, body = await get(emulator, "models/search", page=page, per_page=17, include_deprecated="true")
        assert status == 200 and body["success"] is True
        assert body["result_info"]["page"] == page and body["result_info"]["per_page"] == 17
        assert body["result_info"]["total_count"] == len(CATALOG)
        assert body["result_info"]["count"] == len(body["result"])
        if not body["result"]:
            break
        assert all("schema" not in record for record in body["result"])
        names += [record["name"] for record in body["result"]]
        page += 1
    assert sorted(names) == sorted(m.name for m in CATALOG)


async def test_search_default_page_and_deprecation(emulator: Emulator) -> None:
    status, body = await get(emulator, "models/search")
    assert status == 200
    assert body["result_info"]["per_page"] == DEFAULT_PER_PAGE
    hidden = deprecated_names(datetime.now(UTC).date())
    assert body["result_info"]["total_count"] == len(CATALOG) - len(hidden)
    # qwen1.5-7b-chat-awq was planned for deprecation on 2025-10-01: hidden unless asked for.
    assert "@cf/qwen/qwen1.5-7b-chat-awq" in hidden
    status, body = await get(emulator, "models/search", search="qwen1.5-7b-chat-awq")
    assert body["result"] == []
    status, body = await get(emulator, "models/search", search="qwen1.5-7b-chat-awq",
                             include_deprecated="true")
    assert [r["name"] for r in body["result"]] == ["@cf/qwen/qwen1.5-7b-chat-awq"]


async def test_deprecation_follows_the_server_clock(emulator: Emulator) -> None:
    emulator.state.ledger.clock = FixedClock(datetime(2025, 1, 1, tzinfo=UTC))
    _, body = await get(emulator, "models/search", search="qwen1.5-7b-chat-awq")
    assert [r["name"] for r in body["result"]] == ["@cf/qwen/qwen1.5-7b-chat-awq"]


@pytest.mark.parametrize(("params", "check"), [
    ({"task": "Text Classification"}, lambda r: r["task"]["name"] == "Text Classification"),
    ({"task": "text embeddings"}, lambda r: r["task"]["name"] == "Text Embeddings"),
    ({"author": "meta"}, lambda r: r["name"].split("/")[1] == "meta"),
    ({"source": 2}, lambda r: r["name"].startswith("@hf/")),
    ({"source": "1.0"}, lambda r: r["name"].startswith("@cf/")),
    ({"search": "whisper"}, lambda r: "whisper" in (r["name"] + r["description"]).lower()),
    ({"hide_experimental": "true"},
     lambda r: not any(p["property_id"] == "beta" and p["value"] == "true" for p in r.get("properties", []))),
])
async def test_search_filters(emulator: Emulator, params: dict[str, Any], check: Any) -> None:
    status, body = await get(emulator, "models/search", per_page=1000, include_deprecated="true", **params)
    assert status == 200
    assert body["result"], params
    assert all(check(r) for r in body["result"]), params


async def test_hide_experimental_drops_beta_models(emulator: Emulator) -> None:
    _, everything = await get(emulator, "models/search", per_page=1000, include_deprecated="true")
    _, stable = await get(emulator, "models/search", per_page=1000, include_deprecated="true",
                          hide_experimental="true")
    betas = sum(1 for m in CATALOG if m.beta)
    assert betas > 0
    assert len(everything["result"]) - len(stable["result"]) == betas


@pytest.mark.parametrize("params", [
    {"page": "abc"}, {"page": 0}, {"per_page": 0}, {"per_page": 10000}, {"per_page": "x"},
    {"source": "cf"}, {"include_deprecated": "maybe"}, {"hide_experimental": "2"}, {"format": "openrouter"},
])
async def test_bad_query_values_get_a_clean_400(emulator: Emulator, params: dict[str, Any]) -> None:
    status, body = await get(emulator, "models/search", **params)
    assert status == 400
    assert body["success"] is False and body["errors"][0]["code"] == 1001
    assert next(iter(params)) in body["errors"][0]["message"]


async def test_schema_endpoint(emulator: Emulator) -> None:
    status, body = await get(emulator, "models/schema", model="@cf/meta/m2m100-1.2b")
    assert status == 200
    model = CATALOG.get("@cf/meta/m2m100-1.2b")
    assert model is not None
    assert body["result"] == {"input": model.input_schema, "output": model.output_schema}
    status, body = await get(emulator, "models/schema")
    assert status == 400 and body["errors"][0]["message"] == "Missing required query parameter 'model'"
    status, body = await get(emulator, "models/schema", model="@cf/nobody/nothing")
    assert status == 400 and body["errors"][0] == {"message": "No such model @cf/nobody/nothing or task",
                                                   "code": 5007}


async def test_tasks_and_authors(emulator: Emulator) -> None:
    status, body = await get(emulator, "tasks/search")
    assert status == 200
    assert {t["name"] for t in body["result"]} == {m.task.name for m in CATALOG}
    assert all(set(t) == {"id", "name", "description"} for t in body["result"])
    status, body = await get(emulator, "authors/search")
    assert status == 200
    assert [a["name"] for a in body["result"]] == sorted({m.author for m in CATALOG})
    assert all(set(a) == {"id", "name", "description"} for a in body["result"])
    assert len({a["id"] for a in body["result"]}) == len(body["result"])


def _sdk_session(base: str) -> dict[str, Any]:
    client = Cloudflare(api_token="t", base_url=f"{base}/client/v4", max_retries=0)
    listed = [m["name"] for m in client.ai.models.list(account_id=ACCOUNT, include_deprecated=True,
                                                               per_page=20)]
    default_listed = [m["name"] for m in client.ai.models.list(account_id=ACCOUNT)]
    schema = client.ai.models.schema.get(account_id=ACCOUNT, model="@cf/baai/bge-small-en-v1.5")
    tasks = list(client.ai.tasks.list(account_id=ACCOUNT))
    authors = list(client.ai.authors.list(account_id=ACCOUNT))
    answer = client.ai.run("@cf/huggingface/distilbert-sst-2-int8", account_id=ACCOUNT,
                           text="what a lovely day")
    try:
        client.ai.models.schema.get(account_id=ACCOUNT, model="@cf/nobody/nothing")
        schema_error = None
    except BadRequestError as exc:
        schema_error = exc.status_code
    return {"listed": listed, "default_listed": default_listed, "schema": schema, "tasks": tasks,
            "authors": authors, "answer": answer, "schema_error": schema_error}


async def test_cloudflare_sdk(emulator: Emulator) -> None:
    got = await asyncio.to_thread(_sdk_session, emulator.base)
    assert len(got["listed"]) == len(CATALOG)
    assert sorted(got["listed"]) == sorted(m.name for m in CATALOG)
    hidden = deprecated_names(datetime.now(UTC).date())
    assert sorted(got["default_listed"]) == sorted(m.name for m in CATALOG if m.name not in hidden)
    assert got["schema"].input is not None and got["schema"].output is not None
    assert len(got["tasks"]) == len(CATALOG.tasks)
    assert len(got["authors"]) == len(CATALOG.authors())
    labels = [item.label for item in got["answer"]]
    assert labels == ["NEGATIVE", "POSITIVE"]
    assert got["schema_error"] == 400
