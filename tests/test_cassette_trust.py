"""What record and replay accept from outside: upstream answers (size, neuron figures) and cassette files
(size, fields, symlinks, corrupt content), over real HTTP with a real local upstream and real files."""

from __future__ import annotations

import gzip
import os
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from emulator.cassettes import Cassette, CassetteStore, load_cassette
from emulator.cassettes.format import dump_cassette
from emulator.cassettes.store import Identity
from tests.conftest import Emulator, ServerFactory
from tests.fake_upstream import LLAMA, REAL_ACCOUNT, REAL_TOKEN
from tests.serving import serve

HEADERS = {"Authorization": "Bearer client-token-0123456789"}
CAP = 256 * 1024


class HostileUpstream:
    """Answers like Cloudflare, except for what the request's `prompt` asks: an oversized body, a gzip
    bomb, an oversized stream, a header line too long to read, or any `cf-ai-neurons` figure
    (`prompt` = "neurons:<value>")."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def run(self, request: web.Request) -> web.StreamResponse:
        prompt = str((await request.json()).get("prompt", ""))
        ids = {"cf-ai-req-id": "0f0e0d0c-0000-4000-8000-000000000000"}
        if prompt == "big":
            big = b'{"result":"' + b"x" * (CAP * 4) + b'"}'
            return web.Response(body=big, content_type="application/json")
        if prompt == "bomb":
            packed = gzip.compress(b'{"result":"' + b"0" * (64 * 1024 * 1024) + b'"}', 9)
            return web.Response(body=packed, content_type="application/json",
                                headers={"Content-Encoding": "gzip", **ids})
        if prompt == "big-stream":
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **ids})
            await response.prepare(request)
            for _ in range(64):
                await response.write(b'data: {"response":"' + b"y" * 16384 + b'"}\n\n')
            await response.write_eof()
            return response
        if prompt == "long-header":  # past aiohttp's 8190-byte line limit
            return web.json_response({"result": {}}, headers={**ids, "x-long": "secret-" + "a" * 9000})
        neurons = prompt.removeprefix("neurons:") if prompt.startswith("neurons:") else "1.50"
        body = {"result": {"response": f"ok {prompt}"}, "success": True, "errors": [], "messages": []}
        return web.json_response(body, headers={**ids, "cf-ai-neurons": neurons})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/client/v4/accounts/{account}/ai/run/{model:.+}", self.run)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def hostile() -> AsyncIterator[HostileUpstream]:
    upstream = HostileUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


def recording(upstream: HostileUpstream, tmp_path: Path, mode: str = "record", **more: Any) -> dict[str, Any]:
    return {"mode": mode, "upstream": upstream.base, "upstream_gateway": upstream.base,
            "upstream_token": REAL_TOKEN, "upstream_account_id": REAL_ACCOUNT,
            "cassette_dir": tmp_path / "cassettes", "cassette": "trust", "max_upstream_body_bytes": CAP,
            **more}


async def post(emu: Emulator, prompt: str, **extra: Any) -> tuple[int, bytes]:
    async with emu.session.post(emu.run_url(LLAMA), json={"prompt": prompt, **extra}, headers=HEADERS) as r:
        return r.status, await r.read()


def stored(tmp_path: Path) -> list[str]:
    path = tmp_path / "cassettes" / "trust.json"
    if not path.exists():
        return []
    return [str(i.request.body.json_["prompt"]) for i in load_cassette(path.read_bytes()).interactions]


# Finding 5: upstream answers are capped; recording appends ---------------------------------------


@pytest.mark.parametrize("prompt", ["big", "bomb"])
async def test_an_upstream_answer_over_the_cap_is_refused_and_not_stored(
    hostile: HostileUpstream, make_emulator: ServerFactory, tmp_path: Path, prompt: str
) -> None:
    emu = await make_emulator(**recording(hostile, tmp_path))
    status, body = await post(emu, prompt)
    assert status == 502, body[:300]
    error = orjson.loads(body)["errors"][0]
    assert error["code"] == 7413 and "--max-upstream-body-bytes" in error["message"]
    status, _ = await post(emu, "small")
    assert status == 200
    assert stored(tmp_path) == ["small"]


async def test_an_upstream_stream_over_the_cap_is_cut_and_not_stored(
    hostile: HostileUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(**recording(hostile, tmp_path))
    status, body = await post(emu, "big-stream", stream=True)
    assert status == 200 and len(body) <= CAP + 64 * 1024  # cut near the cap, not 1 MB
    assert stored(tmp_path) == []


async def test_recording_appends_without_rewriting_the_cassette(
    hostile: HostileUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(**recording(hostile, tmp_path, mode="replay-or-record"))
    for i in range(3):
        assert (await post(emu, f"call {i}"))[0] == 200
    path = tmp_path / "cassettes" / "trust.json"
    before, inode = path.read_bytes(), path.stat().st_ino
    assert (await post(emu, "call 3"))[0] == 200
    after = path.read_bytes()
    assert path.stat().st_ino == inode, "the file was replaced, not appended to"
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert stored(tmp_path) == ["call 0", "call 1", "call 2", "call 3"]
    assert (await post(emu, "call 1"))[0] == 200  # replayed from the index kept in memory
    assert stored(tmp_path) == ["call 0", "call 1", "call 2", "call 3"]


async def test_a_version_1_cassette_is_converted_once_then_appended_to(
    hostile: HostileUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(**recording(hostile, tmp_path, mode="replay-or-record"))
    assert (await post(emu, "first"))[0] == 200
    path = tmp_path / "cassettes" / "trust.json"
    path.write_bytes(dump_cassette(load_cassette(path.read_bytes())))  # as a version-1 document
    emu = await make_emulator(**recording(hostile, tmp_path, mode="replay-or-record"))
    assert (await post(emu, "first"))[0] == 200  # replayed from the version-1 file
    assert (await post(emu, "second"))[0] == 200
    converted, inode = path.read_bytes(), path.stat().st_ino
    assert converted.startswith(b'{"format_version":2')
    assert (await post(emu, "third"))[0] == 200
    assert path.stat().st_ino == inode and path.read_bytes().startswith(converted)
    assert stored(tmp_path) == ["first", "second", "third"]


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path: Path) -> None:
    from tests.test_cassettes import make_interaction

    store = CassetteStore(tmp_path)
    store.append("torn", make_interaction(body={"prompt": "kept"}))
    path = tmp_path / "torn.json"
    with open(path, "ab") as fh:
        fh.write(b'{"request":{"method":"POST","pa')  # a writer killed mid-append
    assert len(load_cassette(path.read_bytes()).interactions) == 1
    store.append("torn", make_interaction(body={"prompt": "next"}))
    interactions = load_cassette(path.read_bytes()).interactions
    assert [i.request.body.json_["prompt"] for i in interactions] == ["kept", "next"]


# Finding 6: upstream neuron figures are parsed strictly --------------------------------------------


@pytest.mark.parametrize(
    "figure", ["NaN", "-1e308", "inf", "1e999", "12abc", "-5", "1_0", "+5", "\u0661\u0662", "5 5"],
    ids=["nan", "-1e308", "inf", "1e999", "12abc", "-5", "underscore", "plus", "arabic-indic", "5-space-5"],
)
async def test_a_broken_neuron_figure_neither_disables_the_cap_nor_is_charged(
    hostile: HostileUpstream, make_emulator: ServerFactory, tmp_path: Path, figure: str
) -> None:
    emu = await make_emulator(**recording(hostile, tmp_path, mode="passthrough", max_upstream_neurons=5.0,
                                          plan="paid"))
    assert (await post(emu, f"neurons:{figure}"))[0] == 200
    assert (await post(emu, "neurons:3"))[0] == 200
    assert (await post(emu, "neurons:3"))[0] == 200  # 6 >= 5 now
    status, body = await post(emu, "neurons:3")
    assert status == 429 and orjson.loads(body)["errors"][0]["code"] == 7429, body
    usage = emu.state.ledger.usage()
    assert 6.0 <= usage.neurons < 1e6, usage.neurons  # finite: the broken figure was not charged


@pytest.mark.parametrize("mode", ["record", "passthrough"])
async def test_an_unreadable_upstream_head_is_a_7009_that_does_not_quote_it(
    hostile: HostileUpstream, make_emulator: ServerFactory, tmp_path: Path, mode: str
) -> None:
    emu = await make_emulator(**recording(hostile, tmp_path, mode=mode))
    status, body = await post(emu, "long-header")
    assert status == 502, body[:300]
    error = orjson.loads(body)["errors"][0]
    assert error["code"] == 7009, error
    assert "aaaa" not in error["message"] and "secret" not in error["message"], error
    assert len(error["message"]) < 300 and "8190" in error["message"], error
    assert stored(tmp_path) == []


# Findings 7 and 8: cassette files are checked before they are trusted ------------------------------


def _replay(tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {"mode": "replay", "cassette_dir": tmp_path / "cassettes", "cassette": "trust", **more}


def _valid_cassette(tmp_path: Path, **response: Any) -> Path:
    from tests.test_cassettes import make_interaction

    interaction = make_interaction(body={"prompt": "hi"})
    data = interaction.model_dump(mode="json", exclude_none=True)
    data["request"]["path"] = f"/client/v4/accounts/{{account_id}}/ai/run/{LLAMA}"
    data["response"].update(response.pop("response", {}))
    data.update(response)
    # A version-1 document, as people write by hand.
    document = {"format_version": 1, "name": "trust", "created_at": "2026-01-01T00:00:00Z",
                "interactions": [data]}
    path = tmp_path / "cassettes" / "trust.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path


async def test_the_valid_hand_written_cassette_replays(make_emulator: ServerFactory, tmp_path: Path) -> None:
    _valid_cassette(tmp_path)
    emu = await make_emulator(**_replay(tmp_path))
    assert (await post(emu, "hi"))[0] == 200


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"response": {"status": 99999}}, "status"),
        ({"response": {"status": 101}}, "status"),
        ({"response": {"headers": {"content-type": "text/plain\r\nX-Injected: 1"}}}, "control character"),
        ({"response": {"headers": {"bad header": "x"}}}, "HTTP token"),
        ({"neurons": 1e308}, "neurons"),
        ({"neurons": -1}, "neurons"),
        ({"response": {"headers": {"Transfer-Encoding": "chunked"}}}, "'transfer-encoding' frames"),
        ({"response": {"headers": {"content-length": "47"}}}, "'content-length' frames"),
        ({"response": {"headers": {"content-encoding": "gzip"}}}, "'content-encoding' frames"),
        ({"response": {"headers": {"connection": "close"}}}, "'connection' frames"),
        ({"response": {"headers": {"upgrade": "websocket"}}}, "'upgrade' frames"),
    ],
    ids=["status-99999", "status-101", "crlf-content-type", "bad-header-name", "neurons-1e308",
         "neurons-negative", "transfer-encoding", "content-length", "content-encoding", "connection",
         "upgrade"],
)
async def test_a_hand_edited_field_is_refused_and_nothing_is_charged(
    make_emulator: ServerFactory, tmp_path: Path, edit: dict[str, Any], named: str
) -> None:
    _valid_cassette(tmp_path, **edit)
    emu = await make_emulator(**_replay(tmp_path))
    status, body = await post(emu, "hi")
    assert status == 404, body[:300]
    error = orjson.loads(body)["errors"][0]
    assert error["code"] == 7404 and named in error["message"], error
    assert emu.state.ledger.usage().requests == 0


async def test_a_symlink_out_of_the_cassette_directory_is_refused_without_showing_the_target(
    make_emulator: ServerFactory, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("root:x:0:0:TOPSECRET:/root:/bin/bash\n")
    (tmp_path / "cassettes").mkdir()
    (tmp_path / "cassettes" / "trust.json").symlink_to(secret)
    emu = await make_emulator(**_replay(tmp_path))
    status, body = await post(emu, "hi")
    assert status == 404 and b"TOPSECRET" not in body and b"root:x" not in body
    assert "leads out of the cassette directory" in orjson.loads(body)["errors"][0]["message"]


async def test_a_symlink_inside_the_cassette_directory_is_followed(
    make_emulator: ServerFactory, tmp_path: Path
) -> None:
    real = _valid_cassette(tmp_path)
    real.rename(tmp_path / "cassettes" / "real.json")
    (tmp_path / "cassettes" / "trust.json").symlink_to(tmp_path / "cassettes" / "real.json")
    emu = await make_emulator(**_replay(tmp_path))
    assert (await post(emu, "hi"))[0] == 200


async def test_a_broken_cassette_is_read_once_until_it_changes(
    make_emulator: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.backends import cassette as cassette_backend

    monkeypatch.setattr(cassette_backend, "FILE_CHECK_SECONDS", 0.0)
    path = tmp_path / "cassettes" / "trust.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{" + b" " * (8 * 1024 * 1024))  # 8 MB that never parses
    emu = await make_emulator(**_replay(tmp_path))
    loads: list[str] = []
    original = emu.state.backend.store.read_open

    def counting(name: str) -> tuple[Identity, bytes, int]:
        loads.append(name)
        return original(name)

    monkeypatch.setattr(emu.state.backend.store, "read_open", counting)
    for _ in range(10):
        status, body = await post(emu, "hi")
        assert status == 404 and b"not a valid cassette" in body
    assert loads == ["trust"]
    _valid_cassette(tmp_path)  # fixed: the next request reads it again and replays
    assert (await post(emu, "hi"))[0] == 200
    assert loads == ["trust", "trust"]


async def test_a_cassette_over_the_size_limit_is_refused_without_reading_it(
    make_emulator: ServerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "cassettes" / "trust.json"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:
        fh.truncate(1024 * 1024 * 1024)  # a 1 GB sparse file
    emu = await make_emulator(**_replay(tmp_path))
    status, body = await post(emu, "hi")
    assert status == 404, body[:300]
    message = orjson.loads(body)["errors"][0]["message"]
    assert "--max-cassette-bytes" in message and "1,073,741,824 bytes" in message
    limited = await make_emulator(**_replay(tmp_path, max_cassette_bytes=1000))
    _valid_cassette(tmp_path)
    os.truncate(path, 2000)  # still valid JSON Lines? no matter: refused by size first
    assert "--max-cassette-bytes" in orjson.loads((await post(limited, "hi"))[1])["errors"][0]["message"]


def _post_sync(base: str, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{base}/client/v4/accounts/{'0' * 32}/ai/run/{LLAMA}", data=b'{"prompt": "hi"}', headers=HEADERS)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("kind", ["fifo", "directory", "socket"])
def test_a_cassette_path_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    folder = tmp_path / "cassettes"
    folder.mkdir()
    path = folder / "odd.json"
    holder = None
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        holder = socket.socket(socket.AF_UNIX)
        holder.bind(str(path))
    _valid_cassette(tmp_path)
    args = ("--mode", "replay", "--cassette-dir", str(folder), "--cassette", "odd")
    try:
        with serve(*args, data_dir=tmp_path / "data") as (base, proc):
            # More requests than the loader has threads: none may stay blocked opening the path.
            for _ in range(12):
                status, body = _post_sync(base)
                assert status == 404, body[:300]
                error = orjson.loads(body)["errors"][0]
                assert error["code"] == 7404 and "not a regular file" in error["message"], error
            switch = urllib.request.Request(f"{base}/__emulator__/mode",
                                            data=b'{"mode": "replay", "cassette": "trust"}')
            urllib.request.urlopen(switch, timeout=5).read()
            assert _post_sync(base)[0] == 200
            proc.terminate()
            assert proc.wait(timeout=5) is not None
    finally:
        if holder is not None:
            holder.close()


def test_a_recording_starts_when_its_cassette_path_is_a_fifo(tmp_path: Path) -> None:
    # The banner counts the cassette's interactions before the server answers.
    folder = tmp_path / "cassettes"
    folder.mkdir()
    os.mkfifo(folder / "odd.json")
    env = {"CLOUDFLARE_API_TOKEN": REAL_TOKEN, "CLOUDFLARE_ACCOUNT_ID": REAL_ACCOUNT}
    args = ("--mode", "record", "--cassette-dir", str(folder), "--cassette", "odd", "--upstream",
            "http://127.0.0.1:9")
    with serve(*args, env=env, data_dir=tmp_path / "data") as (base, proc):
        with urllib.request.urlopen(base + "/__emulator__/health", timeout=5) as answer:
            assert answer.status == 200
        proc.terminate()
        assert proc.wait(timeout=5) is not None


def test_both_encodings_load_the_same_cassette() -> None:
    from emulator.cassettes.format import dump_cassette_lines
    from tests.test_cassettes import make_interaction

    cassette = Cassette(name="both", source="recorded", interactions=[make_interaction(), make_interaction()])
    one, lines = load_cassette(dump_cassette(cassette)), load_cassette(dump_cassette_lines(cassette))
    assert (one.format_version, lines.format_version) == (1, 2)
    assert one.model_dump(exclude={"format_version"}) == lines.model_dump(exclude={"format_version"})


async def test_a_cassette_path_that_is_a_directory_is_refused_as_a_broken_cassette(
    make_emulator: ServerFactory, tmp_path: Path
) -> None:
    (tmp_path / "cassettes" / "trust.json").mkdir(parents=True)
    emu = await make_emulator(**_replay(tmp_path))
    for _ in range(2):  # the second from the remembered failure
        status, body = await post(emu, "hi")
        assert status == 404, body[:300]
        error = orjson.loads(body)["errors"][0]
        assert error["code"] == 7404 and "not a regular file" in error["message"], error
