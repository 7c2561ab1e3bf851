"""The OpenAPI description: CLI output equals the served document; one run/ path per model."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from emulator import cli
from emulator.catalog import load_catalog
from emulator.openapi import OPENAPI_PATH, build_spec
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
