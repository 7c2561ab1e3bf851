"""Costs from any CI: `usage --port` asks a running `serve`, `--max-neurons` fails the job over budget,
the banner prints the data directory, and record mode says what it will use and what it wrote."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from emulator.cassettes import load_cassette
from tests.conftest import ACCOUNT
from tests.fake_upstream import LLAMA, REAL_ACCOUNT, REAL_TOKEN, FakeUpstream
from tests.serving import serve

AUTH = {"Authorization": "Bearer t", "Content-Type": "application/json"}


def post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.read()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args], capture_output=True, text=True, timeout=60
    )


def test_usage_by_port_with_errors_column_and_budget_exit_code(tmp_path: Path) -> None:
    with serve(data_dir=tmp_path / "data") as (base, proc):
        url = f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{LLAMA}"
        for i in range(3):
            post(url, json.dumps({"prompt": f"question {i}"}).encode(), AUTH)
        with pytest.raises(urllib.error.HTTPError):  # 400: `prompt` must be a string
            post(url, b'{"prompt": 5}', AUTH)
        port = base.rsplit(":", 1)[1]
        table = cli("usage", "--port", port)
        assert table.returncode == 0, table.stderr
        report = json.loads(cli("usage", "--port", port, "--json").stdout)
        over = cli("usage", "--port", port, "--max-neurons", "0.5")
        under = cli("usage", "--port", port, "--max-neurons", "100000")
    header, row = (
        table.stdout.splitlines()[1],
        next(line for line in table.stdout.splitlines() if line.startswith(LLAMA)),
    )
    assert header.split()[:4] == ["model", "requests", "errors", "neurons"]
    assert row.split()[1:3] == [str(report["requests"]), str(report["errors"])]
    assert report["requests"] >= 3 and report["neurons"] > 0.5
    assert over.returncode == 1 and "over budget" in over.stderr and "--max-neurons 0.50" in over.stderr
    assert under.returncode == 0
    banner = proc.stdout.read() if proc.stdout else ""
    assert f"data directory     {tmp_path / 'data'}" in banner and f"usage --port {port}" in banner


def test_usage_port_without_a_server_says_so() -> None:
    from tests.serving import free_port

    out = cli("usage", "--port", str(free_port()))
    assert out.returncode == 1 and "no emulator answers on 127.0.0.1:" in out.stderr


async def test_record_banner_names_cassette_and_account_then_summarises(tmp_path: Path) -> None:
    upstream = FakeUpstream()
    await upstream.start()
    try:
        env = {"CLOUDFLARE_API_TOKEN": REAL_TOKEN, "CLOUDFLARE_ACCOUNT_ID": REAL_ACCOUNT}
        args = ("--mode", "replay-or-record", "--upstream", upstream.base, "--cassette", "ci")

        def run() -> str:
            with serve(*args, env=env, data_dir=tmp_path) as (base, proc):
                url = f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{LLAMA}"
                post(url, json.dumps({"prompt": "hello"}).encode(), AUTH)
            return proc.stdout.read() if proc.stdout else ""

        out = await asyncio.to_thread(run)
    finally:
        await upstream.stop()
    cassette = tmp_path / "cassettes" / "ci.json"
    assert f"cassette           {cassette}" in out
    assert f"upstream           {upstream.base} as account {REAL_ACCOUNT}" in out
    assert REAL_TOKEN not in out
    assert f"recorded 1 new interaction(s) into {cassette} (1 in the cassette)" in out


def test_record_banner_warns_without_credentials(tmp_path: Path) -> None:
    env = {"CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_ACCOUNT_ID": ""}
    with serve("--mode", "record", env=env, data_dir=tmp_path) as (_, proc):
        pass
    out = proc.stdout.read() if proc.stdout else ""
    assert "WARNING: CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID not set" in out
    assert "nothing was recorded" in out


def _background(port: str, tmp_path: Path, *extra: str) -> Path:
    pid_file = tmp_path / f"emulator-{port}.pid"
    started = cli("serve", "--background", "--port", port, "--data-dir", str(tmp_path / "data"),
                  "--pid-file", str(pid_file), *extra)
    assert started.returncode == 0, started.stdout + started.stderr
    return pid_file


def _answers(port: str) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/__emulator__/health", timeout=2).read()
    except OSError:
        return False
    return True


def test_stop_with_max_neurons_prints_usage_stops_and_fails_over_budget(tmp_path: Path) -> None:
    from tests.serving import free_port

    port = str(free_port())
    pid_file = _background(port, tmp_path)
    base = f"http://127.0.0.1:{port}/client/v4/accounts/{ACCOUNT}/ai/run"
    post(f"{base}/{LLAMA}", b'{"prompt": "what does this job cost?"}', AUTH)
    post(f"{base}/@cf/baai/bge-base-en-v1.5", b'{"text": "hi"}', AUTH)
    over = cli("stop", "--port", port, "--pid-file", str(pid_file), "--max-neurons", "0.5")
    assert over.returncode == 1, over.stdout + over.stderr
    assert "TOTAL" in over.stdout and "stopped pid" in over.stdout
    assert "over budget" in over.stderr and "--max-neurons 0.50" in over.stderr
    # Every ledger figure shows in dollars: bge's 0.02 neurons are $0.00000022, not $0.000000.
    bge = next(line for line in over.stdout.splitlines() if line.startswith("@cf/baai/bge-base-en-v1.5"))
    assert "$0.00000022" in bge.split()
    assert not pid_file.exists() and not _answers(port)

    pid_file = _background(port, tmp_path, "--token", "ci-secret")
    post(f"{base}/{LLAMA}", b'{"prompt": "again"}', {**AUTH, "Authorization": "Bearer ci-secret"})
    under = subprocess.run(
        [sys.executable, "-m", "emulator", "stop", "--port", port, "--pid-file", str(pid_file),
         "--max-neurons", "100000"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "WORKERS_AI_EMULATOR_TOKEN": "ci-secret"})
    assert under.returncode == 0, under.stdout + under.stderr
    assert "TOTAL" in under.stdout and "stopped pid" in under.stdout and not _answers(port)


def test_stop_with_max_neurons_still_stops_a_server_whose_usage_it_cannot_read(tmp_path: Path) -> None:
    from tests.serving import free_port

    port = str(free_port())
    pid_file = _background(port, tmp_path, "--token", "ci-secret")
    out = cli("stop", "--port", port, "--pid-file", str(pid_file), "--max-neurons", "10")  # no --token
    assert out.returncode == 1
    assert "refused the usage report" in out.stderr and "budget could not be checked" in out.stderr
    assert "stopped pid" in out.stdout and not pid_file.exists() and not _answers(port)


async def test_two_servers_record_into_one_committed_cassette_folder_and_leave_only_the_cassette(
    tmp_path: Path,
) -> None:
    """Two `serve` processes in replay-or-record mode share a cassette over real HTTP: every new call of
    both ends up in it, and the folder holds the cassette and nothing else (no lock files)."""
    upstream = FakeUpstream()
    await upstream.start()
    folder = tmp_path / "tests" / "cassettes"
    try:
        env = {"CLOUDFLARE_API_TOKEN": REAL_TOKEN, "CLOUDFLARE_ACCOUNT_ID": REAL_ACCOUNT}
        args = ("--mode", "replay-or-record", "--upstream", upstream.base, "--cassette-dir", str(folder),
                "--cassette", "shared")

        def run() -> None:
            with serve(*args, env=env, data_dir=tmp_path / "a") as (first, _), \
                    serve(*args, env=env, data_dir=tmp_path / "b") as (second, _):
                for i in range(5):
                    for n, base in enumerate((first, second)):
                        url = f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{LLAMA}"
                        post(url, json.dumps({"prompt": f"server {n} call {i}"}).encode(), AUTH)

        await asyncio.to_thread(run)
    finally:
        await upstream.stop()
    assert sorted(p.name for p in folder.iterdir()) == ["shared.json"]
    recorded = load_cassette((folder / "shared.json").read_bytes()).interactions
    prompts = {interaction.request.body.json_["prompt"] for interaction in recorded}
    assert prompts == {f"server {n} call {i}" for n in range(2) for i in range(5)}
