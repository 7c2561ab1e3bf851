"""The env.AI binding surface over real HTTP, framed exactly as Miniflare's remote-proxy client frames it.

tests/test_binding_workerd.py drives the same surface from a real Worker in workerd (Miniflare);
these tests pin the wire details (headers, content types, error bodies) request by request.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from emulator.catalog import Model, load_catalog
from emulator.server.binding import description
from tests import test_catalog_walk as walk
from tests.conftest import ACCOUNT, AUTH, Emulator, ServerFactory, parse_sse, wav_bytes
from tests.fake_upstream import LLAMA, REAL_ACCOUNT, REAL_TOKEN, SDXL, FakeUpstream

ENDPOINT = "https://workers-binding.ai"
OTHER = "fedcba9876543210fedcba9876543210"


def framed(mf_url: str, inner: dict[str, str]) -> dict[str, str]:
    """Headers as remote-bindings-utils.ts `makeFetch` sends them."""
    headers = {f"MF-Header-{k}": v for k, v in inner.items()}
    headers.update({"MF-URL": mf_url, "MF-Binding": "AI"})
    return headers


async def run(emu: Emulator, model: str, inputs: dict[str, Any], options: dict[str, Any] | None = None, *,
              account: str | None = None, path: str = "/run") -> Any:
    """One `env.AI.run(model, inputs, options)` as workerd's ai-api client sends it."""
    url = f"{emu.base}/binding/{account}" if account else f"{emu.base}/"
    headers = framed(f"{ENDPOINT}{path}?version=3", {
        "content-type": "application/json", "cf-consn-sdk-version": "2.0.0", "cf-consn-model-id": model})
    body = json.dumps({"inputs": inputs, "options": options or {}})
    return await emu.session.post(url, data=body, headers=headers)


async def test_text_generation_answers_a_bare_object_as_exactly_application_json(emulator: Emulator) -> None:
    resp = await run(emulator, LLAMA, {"prompt": "Hello"})
    assert resp.status == 200
    # ai-api.ts parses JSON only when content-type === "application/json" (no charset).
    assert resp.headers["Content-Type"] == "application/json"
    body = await resp.json()
    assert isinstance(body["response"], str) and "result" not in body and "success" not in body
    assert resp.headers["cf-ai-req-id"]
    # Same fake as REST for the same model, inputs and seed.
    rest = await emulator.run(LLAMA, {"prompt": "Hello"})
    assert (await rest.json())["result"]["response"] == body["response"]


async def test_stream_true_gives_sse_bytes_and_the_call_is_charged(emulator: Emulator) -> None:
    resp = await run(emulator, LLAMA, {"prompt": "Hello", "stream": True})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(await resp.text())
    assert events[-1] == "[DONE]" and "response" in json.loads(events[0])
    usage = await (await emulator.session.get(f"{emulator.base}/__emulator__/usage?account={ACCOUNT}")).json()
    assert usage["neurons"] > 0


async def test_images_and_audio_come_back_as_bytes(emulator: Emulator) -> None:
    png = await run(emulator, SDXL, {"prompt": "a cat"})
    assert png.status == 200 and png.headers["Content-Type"] == "image/png"
    assert (await png.read())[:8] == b"\x89PNG\r\n\x1a\n"
    flux = await run(emulator, "@cf/black-forest-labs/flux-1-schnell", {"prompt": "a cat"})
    assert flux.headers["Content-Type"] == "application/json"
    assert base64.b64decode((await flux.json())["image"])[:3] == b"\xff\xd8\xff"  # JPEG, as over REST


async def test_readable_stream_input_is_the_raw_body_with_user_inputs_in_the_query(
    emulator: Emulator,
) -> None:
    query = quote(json.dumps({}))
    headers = framed(f"{ENDPOINT}/run?version=3&userInputs={query}", {
        "content-type": "audio/wav", "cf-consn-model-id": "@cf/openai/whisper"})
    resp = await emulator.session.post(f"{emulator.base}/", data=wav_bytes(0.5), headers=headers)
    assert resp.status == 200, await resp.text()
    assert "text" in await resp.json()


async def test_errors_read_as_inference_upstream_error_messages(emulator: Emulator) -> None:
    unknown = await run(emulator, "@cf/does/not-exist", {"prompt": "x"})
    body = await unknown.json()
    assert unknown.status == 400 and unknown.headers["cf-ai-req-id"]
    # The thrown message is `${internalCode}: ${description}` (ai-api.ts _parseError).
    thrown = f"{body['internalCode']}: {body['description']}"
    assert thrown == "5007: No such model @cf/does/not-exist or task"
    assert "name" not in body  # the client's default name: InferenceUpstreamError
    bad = await run(emulator, "@cf/baai/bge-base-en-v1.5", {"texts": "x"})
    body = await bad.json()
    assert body["internalCode"] == 5006 and body["description"].startswith("Error: oneOf at '/' not met")


def test_descriptions_match_the_observed_binding_messages() -> None:
    """fixtures/observations/err-4006-daily-neurons-binding-and-misc.json: the thrown binding text."""
    rest = ("AiError: AiError: you have used up your daily free allocation of 10,000 neurons, please upgrade "
            "to Cloudflare's Workers Paid plan if you would like to continue usage. "
            "(0b1b6a5e-5d1e-4d2a-9c1e-1f2a3b4c5d6e)")
    assert "4006: " + description(rest) == (
        "4006: you have used up your daily free allocation of 10,000 neurons, please upgrade to Cloudflare's "
        "Workers Paid plan if you would like to continue usage.")
    assert description("Capacity temporarily exceeded, please try again.").startswith("Capacity")


async def test_free_plan_wall_gives_4006_through_the_binding(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(daily_neurons=0.001)
    await run(emu, LLAMA, {"prompt": "first"})
    resp = await run(emu, LLAMA, {"prompt": "second"})
    body = await resp.json()
    assert resp.status == 429 and body["internalCode"] == 4006
    assert body["description"].startswith("you have used up your daily free allocation of 10,000 neurons")


async def test_gateway_form_adds_ai_gateway_headers(emulator: Emulator) -> None:
    resp = await run(emulator, LLAMA, {"prompt": "Hi"}, {"gateway": {"id": "my-gw"}}, path="/ai-gateway/run")
    assert resp.status == 200 and resp.headers["cf-aig-log-id"]  # becomes env.AI.aiGatewayLogId
    assert "response" in await resp.json()


async def test_models_search_and_to_markdown(emulator: Emulator) -> None:
    headers = framed(f"{ENDPOINT}/ai-api/models/search?task=Translation", {})
    resp = await emulator.session.get(f"{emulator.base}/", headers=headers)
    names = {m["name"] for m in (await resp.json())["result"]}
    assert "@cf/meta/m2m100-1.2b" in names
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    files = [{"name": "a.html", "mimeType": "text/html", "data": b64(b"<h1>Hi</h1><p>x</p>")},
             {"name": "b.pdf", "mimeType": "application/pdf", "data": b64(b"%PDF-1.4")}]
    headers = framed(f"{ENDPOINT}/to-everything/markdown/transformer", {"content-type": "application/json"})
    body = json.dumps({"files": files})
    resp = await emulator.session.post(f"{emulator.base}/", data=body, headers=headers)
    html, pdf = (await resp.json())["result"]
    assert html["format"] == "markdown" and html["data"] == "# Hi\n\nx\n"  # the REST endpoint's converter
    assert pdf["format"] == "error" and pdf["mimeType"] == "application/pdf"  # "%PDF-1.4" alone is no PDF


async def test_per_account_connection_strings_keep_stubs_faults_log_and_usage_apart(
    emulator: Emulator,
) -> None:
    control = f"{emulator.base}/__emulator__"
    s = emulator.session
    await s.post(f"{control}/stubs", json={"account": OTHER, "model": LLAMA, "text": "stubbed for OTHER"})
    await s.post(f"{control}/faults", json={"account": OTHER, "model": "@cf/baai/*", "kind": "capacity"})
    mine = await (await run(emulator, LLAMA, {"prompt": "Hi"}, account=ACCOUNT)).json()
    theirs = await (await run(emulator, LLAMA, {"prompt": "Hi"}, account=OTHER)).json()
    assert theirs["response"] == "stubbed for OTHER" and mine["response"] != theirs["response"]
    faulted = await run(emulator, "@cf/baai/bge-base-en-v1.5", {"text": ["x"]}, account=OTHER)
    assert faulted.status == 429 and (await faulted.json())["internalCode"] == 3040
    assert (await run(emulator, "@cf/baai/bge-base-en-v1.5", {"text": ["x"]}, account=ACCOUNT)).status == 200
    log = await (await s.get(f"{control}/requests?account={OTHER}")).json()
    assert log["count"] == 2 and {e["surface"] for e in log["requests"]} == {"binding"}
    assert {e["account"] for e in log["requests"]} == {OTHER}
    # A reset of one account leaves the other's usage alone.
    await s.post(f"{control}/reset?account={OTHER}")
    assert (await (await s.get(f"{control}/stubs")).json())["stubs"] == []
    other = await (await s.get(f"{control}/usage?account={OTHER}")).json()
    mine_usage = await (await s.get(f"{control}/usage?account={ACCOUNT}")).json()
    assert other["neurons"] == 0 and mine_usage["neurons"] > 0
    assert (await (await s.get(f"{control}/requests?account={OTHER}")).json())["count"] == 0


async def test_surface_scope_matches_binding_calls_only(emulator: Emulator) -> None:
    await emulator.session.post(f"{emulator.base}/__emulator__/stubs",
                                json={"surface": "binding", "model": LLAMA, "text": "binding only"})
    assert (await (await run(emulator, LLAMA, {"prompt": "Hi"})).json())["response"] == "binding only"
    rest = await (await emulator.run(LLAMA, {"prompt": "Hi"})).json()
    assert rest["result"]["response"] != "binding only"


async def test_health_reports_the_binding_url_and_bad_accounts_are_refused(emulator: Emulator) -> None:
    health = await (await emulator.session.get(f"{emulator.base}/__emulator__/health")).json()
    assert health["binding_url"] == f"{emulator.base}/"
    resp = await run(emulator, LLAMA, {"prompt": "x"}, account="not-hex")
    assert resp.status == 404 and (await resp.json())["internalCode"] == 7003
    # `/` without MF-Binding is still Cloudflare's edge answer.
    plain = await emulator.session.post(f"{emulator.base}/", headers=AUTH)
    assert plain.status == 400 and (await plain.json())["errors"][0]["code"] == 7000


async def test_rpc_websocket_is_accepted(emulator: Emulator) -> None:
    async with emulator.session.ws_connect(f"{emulator.base}/?MF-Binding=AI") as ws:
        await ws.send_str("[\"push\",1]")
        message = await ws.receive()
        assert ws.close_code == 1011 or message.type.name in ("CLOSE", "CLOSED", "CLOSING")



async def test_record_forwards_to_rest_and_replay_serves_binding_calls_offline(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    common = {"upstream": upstream.base, "upstream_gateway": upstream.base, "upstream_token": REAL_TOKEN,
              "upstream_account_id": REAL_ACCOUNT, "cassette_dir": tmp_path / "cassettes", "cassette": "bind"}
    recorder = await make_emulator(mode="record", **common)
    recorded = await run(recorder, LLAMA, {"prompt": "Hello"})
    assert recorded.status == 200, await recorded.text()
    recorded_body = await recorded.json()
    assert recorded.headers["Content-Type"] == "application/json" and "result" not in recorded_body
    sent = upstream.requests[-1]
    assert REAL_ACCOUNT in sent.path and sent.path.endswith(f"/ai/run/{LLAMA}")
    stream = await run(recorder, LLAMA, {"prompt": "Hello", "stream": True})
    recorded_stream = await stream.read()
    replayer = await make_emulator(mode="replay", **{**common, "upstream": "http://127.0.0.1:9"})
    again = await run(replayer, LLAMA, {"prompt": "Hello"})
    assert await again.json() == recorded_body
    again_stream = await run(replayer, LLAMA, {"prompt": "Hello", "stream": True})
    assert await again_stream.read() == recorded_stream
    failed = await run(recorder, LLAMA, {"prompt": "trigger-5006"})
    body = orjson.loads(await failed.read())
    assert failed.status == 400 and body["internalCode"] == 5006


async def test_an_account_header_in_extra_headers_overrides_the_connection_string(emulator: Emulator) -> None:
    headers = framed(f"{ENDPOINT}/run?version=3", {"content-type": "application/json",
                                                  "cf-consn-model-id": LLAMA,
                                                  "x-workers-ai-emulator-account": OTHER})
    resp = await emulator.session.post(f"{emulator.base}/", data=json.dumps({"inputs": {"prompt": "Hi"}}),
                                       headers=headers)
    assert resp.status == 200
    log = await (await emulator.session.get(f"{emulator.base}/__emulator__/requests?account={OTHER}")).json()
    assert log["count"] == 1


async def test_dashboard_shows_binding_calls_and_account_scoped_stubs(emulator: Emulator) -> None:
    await emulator.session.post(f"{emulator.base}/__emulator__/stubs",
                                json={"account": OTHER, "model": LLAMA, "text": "hi"})
    await run(emulator, LLAMA, {"prompt": "Hello"})
    page = await (await emulator.session.get(f"{emulator.base}/__emulator__/")).text()
    assert "<td>binding</td>" in page and f"account={OTHER}" in page
    assert LLAMA in page


async def test_form_data_input_is_sent_as_the_multipart_body(emulator: Emulator) -> None:
    """flux-2 takes `{multipart: {body: FormData, contentType}}`; the binding sends the form as the body."""
    boundary = "----binding-test"
    fields = {"prompt": "a lighthouse", "width": "512", "height": "512"}
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items()) + f"--{boundary}--\r\n".encode()
    headers = framed(f"{ENDPOINT}/run?version=3&userInputs={quote('{}')}", {
        "content-type": f"multipart/form-data; boundary={boundary}",
        "cf-consn-model-id": "@cf/black-forest-labs/flux-2-dev"})
    resp = await emulator.session.post(f"{emulator.base}/", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert "image" in await resp.json()


CATALOG_MODELS = list(load_catalog())


@pytest.mark.parametrize("model", CATALOG_MODELS, ids=lambda m: m.name)
async def test_every_catalog_model_answers_through_the_binding_as_over_rest(
    make_emulator: ServerFactory, model: Model
) -> None:
    """Same fake, same seed: the binding's answer is REST's `result` (bare, exactly application/json),
    or REST's bytes with their content type (images, audio) that user code gets as a ReadableStream."""
    emu = await make_emulator(plan="paid")
    # A frozen clock: per-call ids and `created` stamps (server/stamps.py) are then equal too.
    await emu.session.post(f"{emu.base}/__emulator__/clock", json={"now": "2026-10-02T12:00:00Z"})
    for body in walk.examples(model)[:2]:
        if isinstance(body, dict) and "multipart" in body:
            continue  # the FormData form: test_form_data_input_is_sent_as_the_multipart_body
        kwargs = walk.request_for(model, body)
        async with emu.session.post(emu.run_url(model.name), headers={**AUTH, **kwargs.pop("headers", {})},
                                    **kwargs) as rest:
            rest_type, rest_raw, rest_status = rest.headers["Content-Type"], await rest.read(), rest.status
        if "json" in walk.request_for(model, body):
            resp = await run(emu, model.name, body)
        else:
            raw, kind = (body, walk.request_for(model, body)["headers"]["Content-Type"]) if isinstance(
                body, bytes) else (walk.SMALL_WAV, "audio/wav")
            headers = framed(f"{ENDPOINT}/run?version=3&userInputs={quote('{}')}",
                             {"content-type": kind, "cf-consn-model-id": model.name})
            resp = await emu.session.post(f"{emu.base}/", data=raw, headers=headers)
        binding_raw = await resp.read()
        assert resp.status == rest_status, (model.name, binding_raw[:300])
        if rest_status != 200:
            assert orjson.loads(binding_raw)["internalCode"] == orjson.loads(rest_raw)["errors"][0]["code"]
            continue
        if rest_type.startswith("application/json"):
            assert resp.headers["Content-Type"] == "application/json"
            assert orjson.loads(binding_raw) == orjson.loads(rest_raw)["result"], model.name
        else:
            assert resp.headers["Content-Type"] == rest_type and binding_raw == rest_raw, model.name


async def test_an_open_rpc_socket_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    import asyncio
    import time

    import aiohttp
    from aiohttp import web

    from emulator.server.app import create_app
    from emulator.settings import Settings

    runner = web.AppRunner(create_app(Settings(port=0, data_dir=tmp_path)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"http://127.0.0.1:{port}/?MF-Binding=AI")
        started = time.monotonic()
        await runner.cleanup()
        assert time.monotonic() - started < 5
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type.name in ("CLOSE", "CLOSED", "CLOSING")
