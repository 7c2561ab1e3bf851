"""The JavaScript helper package (js/workers-ai-emulator): packed with `npm pack`, installed from the
tarball into a fresh project, and driven against a `serve` process it starts itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.node_projects import npm_ci

PACKAGE = Path(__file__).resolve().parent.parent / "js" / "workers-ai-emulator"


def test_packed_helper_installs_and_drives_a_server_it_starts(tmp_path: Path) -> None:
    npm_ci(PACKAGE, marker=".package-lock.json")
    packed = subprocess.run(["npm", "pack", "--pack-destination", str(tmp_path), "--json"], cwd=PACKAGE,
                            capture_output=True, text=True, timeout=120)
    assert packed.returncode == 0, packed.stderr
    tarball = tmp_path / json.loads(packed.stdout)[0]["filename"]
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert {"package/src/index.js", "package/src/client.js", "package/src/index.d.ts",
            "package/src/client.d.ts", "package/package.json", "package/README.md",
            "package/binding-worker/index.js", "package/binding-worker/wrangler.jsonc"} <= names
    assert not any("/test/" in n for n in names)
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "consumer", "private": True, "type": "module"}))
    installed = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--offline", str(tarball)],
                               cwd=project, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    manifest = json.loads((project / "package.json").read_text())
    assert manifest["dependencies"]["workers-ai-emulator"].startswith("file:")
    assert json.loads((project / "node_modules" / "workers-ai-emulator" / "package.json").read_text()).get(
        "dependencies") is None  # no runtime dependencies
    shutil.copy(PACKAGE / "test" / "consumer.mjs", project / "consumer.mjs")
    command = Path(sys.executable).with_name("workers-ai-emulator")
    out = subprocess.run(["node", "consumer.mjs"], cwd=project, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "WORKERS_AI_EMULATOR_BIN": str(command)})
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    base = seen["clientUrl"]
    a, b = seen["accounts"]
    assert seen["health"]["binding_url"] == seen["bindingUrl"] == f"{base}/"
    assert seen["scopeBindingUrl"] == seen["helperBindingUrl"] == f"{base}/binding/{a}"
    assert a != b and len(a) == 32
    assert seen["ra"]["body"]["result"]["response"] == "stubbed for a"  # a's stub, not b's fault
    assert seen["rb"]["status"] == 429 and seen["rb"]["body"]["errors"][0]["code"] == 3040
    assert seen["before"]["a"] > 0 and seen["before"]["aRequests"] == 1 and seen["before"]["bStubs"] == 0
    assert seen["after"] == {"a": 0, "aRequests": 0, "bFaults": 1}  # a's reset left b alone
    assert seen["attachedHealth"] == "ok"
    assert seen["wrappedOptions"] == {"returnRawResponse": True,
                                      "extraHeaders": {"x-workers-ai-emulator-account": a}}
    assert seen["wrappedLastRequestId"] == "x"
