"""The default locale's sentence table ships with the package (emulator/fakes/data/): it must be what
`build_table` makes from the installed Faker, and a fresh server answers text without importing Faker."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from emulator.fakes import text
from tests.conftest import ACCOUNT


def test_the_shipped_table_is_what_faker_builds() -> None:
    shipped = text._build_table(text.DEFAULT_LOCALE)
    built = text.build_table(text.DEFAULT_LOCALE)
    assert text.shipped_table_path(text.DEFAULT_LOCALE).is_file()
    assert shipped == built, (
        "emulator/fakes/data is stale: run "
        "`python -c 'from emulator.fakes.text import write_shipped_table; write_shipped_table()'`"
    )


def test_a_fresh_server_answers_text_without_importing_faker() -> None:
    """Over real HTTP (aiohttp's test server on a free localhost port) in a new interpreter."""
    script = textwrap.dedent(f"""
        import asyncio, sys, tempfile
        from pathlib import Path
        from aiohttp.test_utils import TestClient, TestServer
        from emulator.server.app import create_app
        from emulator.settings import Settings

        async def main():
            app = create_app(Settings(data_dir=Path(tempfile.mkdtemp())))
            async with TestClient(TestServer(app)) as client:
                path = "/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
                resp = await client.post(path, json={{"prompt": "hello"}},
                                         headers={{"Authorization": "Bearer t"}})
                body = await resp.json()
                assert resp.status == 200 and body["result"]["response"], body
                usage = body["result"]["usage"]
                assert usage["completion_tokens"] > 0
            print("faker" in sys.modules)

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
