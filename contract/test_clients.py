"""Real client libraries as contract drivers, each redirected only by configuration (see clients.md)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from contract import checks
from contract.targets import FIXTURES, WRONG_TOKEN, Target
from emulator.catalog import guide

pytestmark = pytest.mark.live

CHAT = "@cf/meta/llama-3.1-8b-instruct"
GUIDE_CHAT = list(guide.CHAT_MODELS)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def http_client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=120)


@pytest.fixture(scope="module")
def cf(target: Target) -> Any:
    from cloudflare import Cloudflare

    return Cloudflare(api_token=target.token, base_url=target.api, max_retries=0, http_client=http_client())


@pytest.fixture(scope="module")
def oai(target: Target) -> Any:
    from openai import OpenAI

    return OpenAI(api_key=target.token, base_url=f"{target.ai}/v1", max_retries=0, http_client=http_client())


# --- cloudflare SDK ----------------------------------------------------------------------------------------


def test_cloudflare_sdk_run_json(cf: Any, target: Target) -> None:
    result = cf.ai.run(CHAT, account_id=target.account, prompt="Say hello", max_tokens=16)
    assert isinstance(result["response"], str)
    checks.valid_output(CHAT, result)
    emb = cf.ai.run("@cf/baai/bge-base-en-v1.5", account_id=target.account, text=["a", "b"])
    assert emb["shape"] == [2, 768]
    tr = cf.ai.run(
        "@cf/meta/m2m100-1.2b", account_id=target.account, text="Hello", source_lang="en", target_lang="fr"
    )
    assert isinstance(tr["translated_text"], str)


def test_cloudflare_sdk_raw_response_binary(cf: Any, target: Target) -> None:
    raw = cf.ai.with_raw_response.run(
        "@cf/bytedance/stable-diffusion-xl-lightning", account_id=target.account, prompt="a red bicycle"
    )
    assert raw.http_response.status_code == 200
    assert raw.http_response.headers["content-type"].startswith("image/png")
    checks.png(raw.http_response.content)


def test_cloudflare_sdk_streaming_response(cf: Any, target: Target) -> None:
    with cf.ai.with_streaming_response.run(
        CHAT, account_id=target.account, prompt="Count to three", stream=True, max_tokens=16
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all("response" in e for e in events)


def test_cloudflare_sdk_errors(target: Target) -> None:
    import cloudflare

    bad = cloudflare.Cloudflare(
        api_token=WRONG_TOKEN, base_url=target.api, max_retries=0, http_client=http_client()
    )
    with pytest.raises(cloudflare.AuthenticationError) as auth:
        bad.ai.run(CHAT, account_id=target.account, prompt="hi")
    assert auth.value.status_code == 401 and auth.value.body["errors"][0]["code"] == 10000
    good = cloudflare.Cloudflare(
        api_token=target.token, base_url=target.api, max_retries=0, http_client=http_client()
    )
    with pytest.raises(cloudflare.BadRequestError) as unknown:
        good.ai.run("@cf/contract/does-not-exist", account_id=target.account, prompt="hi")
    assert unknown.value.body["errors"][0]["code"] == 5007


def test_cloudflare_sdk_models_list_paginates(cf: Any, target: Target) -> None:
    page = cf.ai.models.list(account_id=target.account, per_page=20)
    assert len(page.result) == 20
    names = [m["name"] for m in cf.ai.models.list(account_id=target.account, per_page=50)]  # walks every page
    assert len(names) == len(set(names)) and len(names) > 50
    assert CHAT in names
    tasks = cf.ai.models.list(account_id=target.account, task="Translation", per_page=50)
    assert {m["task"]["name"] for m in tasks} == {"Translation"}


def test_cloudflare_sdk_schema(cf: Any, target: Target) -> None:
    schema = cf.ai.models.schema.get(account_id=target.account, model="@cf/meta/m2m100-1.2b")
    data = schema if isinstance(schema, dict) else schema.to_dict()
    assert "input" in data and "output" in data
    assert "translated_text" in json.dumps(data["output"])


# --- openai SDK --------------------------------------------------------------------------------------------


def test_openai_chat_object(oai: Any) -> None:
    c = oai.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Say hello"}], max_tokens=16
    )
    assert c.object == "chat.completion" and c.model == CHAT
    assert c.id.startswith("id-") and isinstance(c.created, int)
    assert c.choices[0].message.role == "assistant" and isinstance(c.choices[0].message.content, str)
    assert c.choices[0].finish_reason in ("stop", "length")
    raw = oai.chat.completions.with_raw_response.create(
        model=CHAT, messages=[{"role": "user", "content": "Say hello"}], max_tokens=16
    )
    wire = raw.http_response.json()  # key order on the wire, as in the real 2024 capture
    assert list(wire)[:5] == ["id", "object", "created", "model", "choices"]
    assert list(wire["choices"][0]) == ["index", "message", "logprobs", "finish_reason"]
    checks.req_id(raw.http_response)
    checks.neurons_header(raw.http_response)


def test_openai_chat_stream(oai: Any) -> None:
    stream = oai.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks and all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert any(c.usage is not None and c.usage.total_tokens > 0 for c in chunks)
    assert any(ch.finish_reason in ("stop", "length") for c in chunks for ch in c.choices)


def test_openai_stream_wire_framing(http: httpx.Client, target: Target) -> None:
    r = http.post(
        target.v1("chat/completions"),
        headers=target.auth(),
        json={
            "model": CHAT,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": 8,
        },
    )
    assert r.status_code == 200 and checks.media_type(r) == "text/event-stream"
    payloads = checks.sse_events(r.text)
    assert payloads[-1] == "[DONE]"
    for event in checks.sse_json(payloads):
        assert event["object"] == "chat.completion.chunk"


def test_openai_tools(oai: Any) -> None:
    c = oai.chat.completions.create(
        model="@cf/openai/gpt-oss-20b",
        max_tokens=200,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Call get_weather with city exactly Paris."}],
    )
    call = c.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    assert c.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    "model,dims",
    [
        ("@cf/baai/bge-small-en-v1.5", 384),
        ("@cf/baai/bge-base-en-v1.5", 768),
        ("@cf/baai/bge-large-en-v1.5", 1024),
    ],
)
def test_openai_embeddings(oai: Any, model: str, dims: int) -> None:
    e = oai.embeddings.create(model=model, input=["hello", "world"], encoding_format="float")
    assert e.object == "list" and len(e.data) == 2
    assert [d.index for d in e.data] == [0, 1] and all(d.object == "embedding" for d in e.data)
    assert all(len(d.embedding) == dims for d in e.data)
    default = oai.embeddings.create(model=model, input="hello")  # the SDK asks for base64 by default
    assert len(default.data[0].embedding) == dims


def test_openai_error_status(target: Target) -> None:
    import openai

    client = openai.OpenAI(
        api_key=target.token, base_url=f"{target.ai}/v1", max_retries=0, http_client=http_client()
    )
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="@cf/contract/does-not-exist", messages=[{"role": "user", "content": "hi"}]
        )
    assert exc.value.status_code == 400


@pytest.mark.parametrize("model", GUIDE_CHAT)
def test_guide_chat_models_via_double_slash_base(http: httpx.Client, target: Target, model: str) -> None:
    """The guide's own curl URL has `//ai/v1/chat/completions`; users copy it and the edge accepts it."""
    url = f"{target.api}/accounts/{target.account}//ai/v1/chat/completions"
    r = http.post(
        url,
        headers=target.auth(),
        json={"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8},
    )
    assert r.status_code == 200, checks.describe(r)
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == model
    assert isinstance(body["choices"][0]["message"]["content"], str)
    checks.req_id(r)


# --- OpenAI surfaces beyond chat ---------------------------------------------------------------------


def test_responses_api_gpt_oss(http: httpx.Client, target: Target) -> None:
    r = http.post(
        target.v1("responses"),
        headers=target.auth(),
        json={"model": "@cf/openai/gpt-oss-20b", "input": "Say hello", "max_output_tokens": 64},
    )
    assert r.status_code == 200, checks.describe(r)
    body = r.json()
    assert body["object"] == "response"
    assert isinstance(body["output"], list) and body["output"]


def test_gateway_workers_ai_run(http: httpx.Client, target: Target) -> None:
    if target.gateway_id is None:
        pytest.skip("AI Gateway: set CLOUDFLARE_GATEWAY_ID")
    r = http.post(
        target.gateway(f"workers-ai/{CHAT}"), headers=target.auth(), json={"prompt": "hi", "max_tokens": 8}
    )
    checks.valid_output(CHAT, checks.envelope(r))


def test_gateway_compat_strips_prefix(http: httpx.Client, target: Target) -> None:
    if target.gateway_id is None:
        pytest.skip("AI Gateway: set CLOUDFLARE_GATEWAY_ID")
    r = http.post(
        target.gateway("compat/chat/completions"),
        headers=target.auth(),
        json={
            "model": f"workers-ai/{CHAT}",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
        },
    )
    assert r.status_code == 200, checks.describe(r)
    assert r.json()["model"] == CHAT


# --- framework integration: langchain-cloudflare ----------------------------------------------------------


def test_langchain_cloudflare_chat_and_embeddings(target: Target) -> None:
    from langchain_cloudflare import ChatCloudflareWorkersAI, CloudflareWorkersAIEmbeddings

    chat = ChatCloudflareWorkersAI(
        model=CHAT, account_id=target.account, api_token=target.token, base_url=target.api, max_tokens=16
    )
    message = chat.invoke("Say hello")
    assert isinstance(message.content, str) and message.content
    chunks = list(chat.stream("Count to three"))
    assert "".join(str(c.content) for c in chunks)
    emb = CloudflareWorkersAIEmbeddings(
        account_id=target.account,
        api_token=target.token,
        api_base_url=f"{target.api}/accounts",
        model_name="@cf/baai/bge-small-en-v1.5",
    )
    vectors = emb.embed_documents(["hello", "world"])
    assert len(vectors) == 2 and all(len(v) == 384 for v in vectors)
    assert len(emb.embed_query("hello")) == 384


def test_whisper_via_cloudflare_sdk_int_list(cf: Any, target: Target) -> None:
    wav = (FIXTURES / "media" / "tone.wav").read_bytes()
    result = cf.ai.run("@cf/openai/whisper", account_id=target.account, audio=list(wav))
    checks.valid_output("@cf/openai/whisper", result)
    turbo = cf.ai.run(
        "@cf/openai/whisper-large-v3-turbo", account_id=target.account, audio=base64.b64encode(wav).decode()
    )
    assert isinstance(turbo["text"], str)
