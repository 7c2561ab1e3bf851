"""The built wheel, installed without this checkout (not editable), carries everything it needs:
catalog, prices, dashboard assets, the console script and the pytest plugin's entry point."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.packaging import build_wheel, run

PROBE = r"""
import json, sys, urllib.request
from pathlib import Path
import emulator
from emulator.launch.background import BackgroundServer
from emulator.settings import Settings

assert Path(emulator.__file__).is_relative_to(sys.argv[1]), emulator.__file__
server = BackgroundServer(Settings(port=0, data_dir=Path(sys.argv[2]))).start()
try:
    def get(path, body=None):
        req = urllib.request.Request(server.base + path, data=body, headers={"Authorization": "Bearer t"})
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read()
    acct = "/client/v4/accounts/0123456789abcdef0123456789abcdef/ai"
    _, body = get(acct + "/models/search?per_page=1000")
    models = json.loads(body)["result"]
    _, body = get(acct + "/run/@cf/meta/llama-3.1-8b-instruct", b'{"prompt": "hi"}')
    answer = json.loads(body)["result"]["response"]
    _, css = get("/__emulator__/dashboard/app.css")
    _, js = get("/__emulator__/dashboard/app.js")
    _, page = get("/__emulator__/")
    print(json.dumps({"models": len(models), "answer": bool(answer), "css": len(css), "js": len(js),
                      "page": b"<html" in page.lower()}))
finally:
    server.stop()
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked into its own directory (`pip install --target`), no dependencies."""
    where = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(where / "dist")
    target = where / "site"
    run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        timeout=300,
    )
    return target


def _env(target: Path) -> dict[str, str]:
    # The target first on sys.path: `emulator` comes from the wheel, not this checkout's editable install.
    return {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}


def test_wheel_serves_catalog_answers_and_dashboard(installed: Path, tmp_path: Path) -> None:
    out = run(
        [sys.executable, "-c", PROBE, str(installed), str(tmp_path / "data")],
        timeout=120,
        cwd=tmp_path,
        env=_env(installed),
    )
    import json

    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["models"] > 100 and seen["answer"] and seen["page"]
    assert seen["css"] > 100 and seen["js"] > 100


def test_wheel_ships_console_script_and_pytest_entry_point(installed: Path, tmp_path: Path) -> None:
    script = installed / "bin" / "workers-ai-emulator"
    assert script.is_file()
    version = run([sys.executable, str(script), "--version"], timeout=60, cwd=tmp_path, env=_env(installed))
    assert "0.1.0" in version
    (dist_info,) = installed.glob("workers_ai_emulator-*.dist-info")
    entry_points = (dist_info / "entry_points.txt").read_text()
    assert "[pytest11]" in entry_points and "workers_ai = emulator.pytest_plugin" in entry_points
    shipped = {p.relative_to(installed / "emulator").as_posix() for p in (installed / "emulator").rglob("*")}
    assert {
        "accounting/data/prices.json",
        "catalog/data/_extra_models.json",
        "control/dashboard/static/app.js",
    } <= shipped
