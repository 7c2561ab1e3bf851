"""The OpenAPI description: CLI output equals the served document; one run/ path per model; answers
validate against what it describes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from emulator import cli
from emulator.catalog import load_catalog
from emulator.server.openapi import OPENAPI_PATH, build_spec
from tests.conftest import ServerFactory


def test_one_run_path_per_catalog_model() -> None:
    spec = build_spec()
    assert spec["openapi"] == "3.1.0"
    run_paths = {p.split("/ai/run/", 1)[1] for p in spec["paths"] if "/ai/run/" in p}
    assert run_paths == {m.name for m in load_catalog()}
    op = spec["paths"]["/client/v4/accounts/{account_id}/ai/run/@cf/meta/llama-3.1-8b-instruct"]["post"]
    assert set(op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert op["responses"]["413"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert spec["components"]["schemas"]["ModelError"]["x-key-order"] == [
        "errors",
        "success",
        "result",
        "messages",
    ]


async def test_cli_output_is_the_served_document(make_emulator: ServerFactory, tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    result = CliRunner().invoke(cli.main, ["openapi", "-o", str(out)])
    assert result.exit_code == 0, result.output
    emu = await make_emulator()
    async with emu.session.get(emu.base + OPENAPI_PATH) as resp:
        assert resp.status == 200
        served = await resp.json()
    assert json.loads(out.read_text()) == served


async def test_no_control_plane_no_document(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(control_plane=False)
    async with emu.session.get(emu.base + OPENAPI_PATH) as resp:
        assert resp.status >= 400


@pytest.mark.parametrize("body", [
    {"prompt": "Say hi"},
    {"messages": [{"role": "user", "content": "Say hi"}]},
    {"input": "Say hi"},
    {"input": [{"role": "user", "content": "Say hi"}], "reasoning": {"effort": "low"}},
])
async def test_gpt_oss_answers_match_the_described_response(make_emulator: ServerFactory,
                                                            body: dict[str, Any]) -> None:
    # The catalog's Responses output items are a oneOf of two branches with no required keys, so
    # every item matches both: the document reads oneOf as anyOf, as the validators do.
    model = "@cf/openai/gpt-oss-20b"
    spec = build_spec()
    op = spec["paths"][f"/client/v4/accounts/{{account_id}}/ai/run/{model}"]["post"]
    schema = {**op["responses"]["200"]["content"]["application/json"]["schema"],
              "components": spec["components"]}
    emu = await make_emulator(plan="paid")
    async with await emu.run(model, body) as resp:
        assert resp.status == 200
        answer = await resp.json()
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(answer)]
    assert errors == []
    if "input" in body:
        assert answer["result"]["object"] == "response"
        assert [item["type"] for item in answer["result"]["output"]] == ["reasoning", "message"]
