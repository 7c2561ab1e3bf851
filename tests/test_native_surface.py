"""The native surface over real HTTP: routing, edge errors, auth, validation, envelope and headers."""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.conftest import ACCOUNT, AUTH, Emulator, ServerFactory

LLAMA = "@cf/meta/llama-3-8b-instruct"


async def test_run_with_raw_and_percent_encoded_model(emulator: Emulator) -> None:
    raw = await emulator.run(LLAMA, {"prompt": "hello"})
    encoded_url = emulator.run_url(LLAMA.replace("/", "%2F"))
    encoded = await emulator.session.post(encoded_url, json={"prompt": "hello"}, headers=AUTH)
    assert raw.status == encoded.status == 200
    assert await raw.read() == await encoded.read()


async def test_envelope_key_order_and_headers(emulator: Emulator) -> None:
    resp = await emulator.run(LLAMA, {"prompt": "Where did the phrase Hello World come from"})
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert list(body) == ["result", "success", "errors", "messages"]
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    assert uuid.UUID(resp.headers["cf-ai-req-id"])
    neurons = resp.headers["cf-ai-neurons"]
    assert neurons.count(".") == 1 and len(neurons.split(".")[1]) == 2


async def test_doubled_slash_before_ai_works_the_same(emulator: Emulator) -> None:
    url = f"{emulator.base}/client/v4/accounts/{ACCOUNT}//ai/run/{LLAMA}"
    doubled = await emulator.session.post(url, json={"prompt": "hi"}, headers=AUTH)
    normal = await emulator.run(LLAMA, {"prompt": "hi"})
    assert doubled.status == 200
    assert await doubled.read() == await normal.read()


async def test_doubled_slash_quirk_off_is_unknown_path(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator(quirks={"double-slash-path": False})
    url = f"{emulator.base}/client/v4/accounts/{ACCOUNT}//ai/run/{LLAMA}"
    resp = await emulator.session.post(url, json={"prompt": "hi"}, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["code"] == 7000


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/client/v4/accounts/not-an-account/ai/run/@cf/meta/llama-3-8b-instruct", 404, 7003),
        ("/client/v4/accounts/0123456789abcdef0123456789abcdeg/ai/v1/chat/completions", 404, 7003),
        (f"/client/v4/accounts/{ACCOUNT}/ai/nothing-here", 400, 7000),
        (f"/client/v4/{ACCOUNT}/ai/run/@cf/meta/llama-3-8b-instruct", 400, 7000),
        ("/client/v4/ai/run/@cf/meta/llama-3-8b-instruct", 400, 7000),
        ("/somewhere/else", 400, 7000),
    ],
)
async def test_edge_routing_errors(emulator: Emulator, path: str, status: int, code: int) -> None:
    resp = await emulator.session.post(emulator.base + path, json={"prompt": "x"}, headers=AUTH)
    assert resp.status == status
    body = await resp.json()
    assert list(body) == ["result", "success", "errors", "messages"]
    assert body["result"] is None and body["success"] is False
    assert body["errors"][0]["code"] == code
    assert "cf-ai-req-id" not in resp.headers
    if code == 7003:
        assert body["errors"][0]["message"] == (
            f"Could not route to {path}, perhaps your object identifier is invalid?"
        )
    else:
        assert body["errors"][0]["message"] == "No route for that URI"


async def test_missing_and_malformed_credentials(emulator: Emulator) -> None:
    missing = await emulator.session.post(emulator.run_url(LLAMA), json={"prompt": "x"})
    assert missing.status == 403
    assert (await missing.json())["errors"] == [{"code": 9106, "message": "Missing X-Auth-Email header"}]
    assert "cf-ai-req-id" not in missing.headers
    malformed = await emulator.session.post(
        emulator.run_url(LLAMA), json={"prompt": "x"}, headers={"Authorization": "Bearer"}
    )
    assert malformed.status == 400
    assert (await malformed.json())["errors"][0] == {
        "code": 9106,
        "message": "Authentication failed (status: 400)",
    }


async def test_any_token_accepted_by_default_and_x_auth_pair(emulator: Emulator) -> None:
    resp = await emulator.run(LLAMA, {"prompt": "x"}, headers={"Authorization": "Bearer whatever-123"})
    assert resp.status == 200
    pair = await emulator.session.post(
        emulator.run_url(LLAMA),
        json={"prompt": "x"},
        headers={"X-Auth-Email": "me@example.com", "X-Auth-Key": "k" * 37},
    )
    assert pair.status == 200


async def test_token_option_rejects_wrong_token(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator(token="s3cret")
    wrong = await emulator.run(LLAMA, {"prompt": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert await wrong.json() == {
        "result": None,
        "success": False,
        "errors": [{"code": 10000, "message": "Authentication error"}],
        "messages": [],
    }
    assert "cf-ai-req-id" not in wrong.headers
    right = await emulator.run(LLAMA, {"prompt": "x"}, headers={"Authorization": "Bearer s3cret"})
    assert right.status == 200
    key = await emulator.session.post(
        emulator.run_url(LLAMA),
        json={"prompt": "x"},
        headers={"X-Auth-Email": "me@example.com", "X-Auth-Key": "s3cret"},
    )
    assert key.status == 200


async def test_unknown_model_is_5007(emulator: Emulator) -> None:
    resp = await emulator.run("@cf/meta/llama-3-3b-instruct", {"prompt": "x"})
    assert resp.status == 400
    body = await resp.json()
    assert body["errors"] == [{"message": "No such model @cf/meta/llama-3-3b-instruct or task", "code": 5007}]
    assert list(body) == ["errors", "success", "result", "messages"] and body["result"] == {}
    assert uuid.UUID(resp.headers["cf-ai-req-id"])


@pytest.mark.parametrize(
    "model",
    [
        "@cf/fblgit/una-cybertron-7b-v2-awq",
        "@cf/mistral/mistral-7b-instruct-v0.1-vllm",
        "@hf/thebloke/codellama-7b-instruct-awq",
    ],
)
async def test_guide_models_missing_from_catalog_are_served(emulator: Emulator, model: str) -> None:
    resp = await emulator.run(model, {"messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200
    assert isinstance((await resp.json())["result"]["response"], str)


async def test_validation_messages_use_cloudflare_wording(emulator: Emulator) -> None:
    resp = await emulator.run(
        LLAMA, {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    )
    assert resp.status == 400
    body = await resp.json()
    assert list(body) == ["errors", "success", "result", "messages"]
    message = body["errors"][0]["message"]
    assert body["errors"][0]["code"] == 5006
    assert message.startswith(
        "AiError: Bad input: Error: oneOf at '/' not met, 0 matches: required properties at '/' are 'prompt'"
    )
    # Byte-for-byte the real capture (fixtures/observations/err-5006-schema-v1-content-array.json).
    assert message.endswith("Type mismatch of '/messages/0/content', 'array' not in 'string'")


async def test_missing_prompt_and_flux_extra_properties(emulator: Emulator) -> None:
    bart = await emulator.run("@cf/facebook/bart-large-cnn", {"text": "x"})
    assert bart.status == 400
    assert (await bart.json())["errors"][0]["message"] == (
        "AiError: Bad input: Error: required properties at '/' are 'input_text'"
    )
    flux = await emulator.run(
        "@cf/black-forest-labs/flux-1-schnell", {"prompt": "cat", "width": 512, "height": 512}
    )
    assert flux.status == 400
    assert (await flux.json())["errors"][0]["message"] == (
        "AiError: Bad input: Additional or unevaluated properties '/width, /height' at '/' not allowed"
    )


@pytest.mark.parametrize("body", [b"{not json", b"[1,2", b'{"prompt": "x"', b"\xff\xfe\x00"])
async def test_invalid_json_is_a_clear_400(emulator: Emulator, body: bytes) -> None:
    resp = await emulator.run(LLAMA, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    payload = await resp.json()
    assert payload["success"] is False and payload["errors"][0]["code"] == 5006
    assert "not valid JSON" in payload["errors"][0]["message"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        [1, 2],
        "text",
        12,
        None,
        {"prompt": ""},
        {"prompt": 5},
        {"messages": "hi"},
        {"messages": [{}]},
        {"prompt": "x", "max_tokens": "ten"},
    ],
)
async def test_bad_bodies_never_500(emulator: Emulator, body: object) -> None:
    resp = await emulator.run(LLAMA, body)
    assert 400 <= resp.status < 500
    payload = await resp.json()
    assert payload["success"] is False and payload["errors"][0]["code"] == 5006


async def test_get_on_run_is_not_a_500(emulator: Emulator) -> None:
    resp = await emulator.session.get(emulator.run_url(LLAMA), headers=AUTH)
    assert resp.status in (400, 405)
    assert (await resp.json())["success"] is False


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "audio/mpeg, application/json"])
async def test_melotts_answers_json_base64_unless_asked_for_audio_only(emulator: Emulator,
                                                                      accept: str | None) -> None:
    """A REST client sending no Accept (Node fetch sends `*/*`) gets `{result: {audio: <base64 MP3>}}`."""
    headers = {"Accept": accept} if accept else {}
    resp = await emulator.run("@cf/myshell-ai/melotts", {"prompt": "Good morning", "lang": "en"},
                              headers=headers)
    assert resp.status == 200 and resp.content_type == "application/json"
    body = await resp.json()
    mp3 = base64.b64decode(body["result"]["audio"])
    assert mp3[:3] == b"ID3" or mp3[0] == 0xFF


async def test_melotts_answers_raw_mpeg_when_accept_asks_only_for_it(emulator: Emulator) -> None:
    inputs = {"prompt": "Good morning", "lang": "en"}
    raw = await emulator.run("@cf/myshell-ai/melotts", inputs, headers={"Accept": "audio/mpeg"})
    audio = await raw.read()
    assert raw.status == 200 and raw.content_type == "audio/mpeg"
    again = await emulator.run("@cf/myshell-ai/melotts", inputs)  # the same inputs, no Accept: JSON again
    assert base64.b64decode((await again.json())["result"]["audio"]) == audio
