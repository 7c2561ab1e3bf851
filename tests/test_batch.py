"""Async batch over real HTTP: queue, poll queued → running → responses, charging, and the error cases."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from emulator.server.openapi import build_spec
from tests.conftest import AUTH, Emulator

MODEL = "@cf/baai/bge-small-en-v1.5"


async def post(emulator: Emulator, model: str, body: Any, *,
               queue: bool = True) -> tuple[int, dict[str, Any]]:
    url = emulator.run_url(model) + ("?queueRequest=true" if queue else "")
    async with emulator.session.post(url, json=body, headers=AUTH) as response:
        return response.status, await response.json()


async def test_batch_round_trip(emulator: Emulator) -> None:
    requests = [{"text": "hello world", "external_reference": "a"}, {"text": ["x y", "z"]}]
    status, body = await post(emulator, MODEL, {"requests": requests})
    assert status == 200 and body["success"] is True
    queued = body["result"]
    assert queued["status"] == "queued" and queued["model"] == MODEL and queued["request_id"]
    rid = queued["request_id"]
    status, body = await post(emulator, MODEL, {"request_id": rid})
    assert body["result"]["status"] == "queued"
    status, body = await post(emulator, MODEL, {"request_id": rid}, queue=False)
    assert body["result"]["status"] == "running"
    status, body = await post(emulator, MODEL, {"request_id": rid})
    assert status == 200
    done = body["result"]
    assert [r["id"] for r in done["responses"]] == [0, 1]
    assert [r["external_reference"] for r in done["responses"]] == ["a", None]
    assert all(r["success"] is True for r in done["responses"])
    assert done["responses"][1]["result"]["shape"] == [2, 384]
    assert done["usage"]["total_tokens"] == done["usage"]["prompt_tokens"] > 0
    # Same as a synchronous call with the same inputs.
    url = emulator.run_url(MODEL)
    async with emulator.session.post(url, json={"text": "hello world"}, headers=AUTH) as r:
        sync = (await r.json())["result"]
    assert done["responses"][0]["result"] == sync
    # Later polls repeat the finished answer without charging again.
    status, again = await post(emulator, MODEL, {"request_id": rid})
    assert again["result"] == done


async def test_batch_errors(emulator: Emulator) -> None:
    status, body = await post(emulator, "@cf/huggingface/distilbert-sst-2-int8",
                              {"requests": [{"text": "hi"}]})
    assert status == 400 and "does not support async batch" in body["errors"][0]["message"]
    status, body = await post(emulator, MODEL, {"request_id": "00000000-0000-0000-0000-000000000000"})
    assert status == 404 and body["success"] is False
    status, body = await post(emulator, MODEL, {"requests": []})
    assert status == 400 and body["errors"][0]["code"] == 5006
    status, body = await post(emulator, MODEL, {"requests": [{"pooling": "mean"}]})
    assert status == 400 and body["errors"][0]["code"] == 5006
    big = "word " * (2 * 1024 * 1024 + 10)
    status, body = await post(emulator, MODEL, {"requests": [{"text": big}]})
    assert status == 413 and body["errors"][0]["code"] == 3006


async def test_reject_if_busy_option_passes_validation(emulator: Emulator) -> None:
    # flux-1-schnell has additionalProperties:false; `options` is a platform option, not a model input.
    async with emulator.session.post(emulator.run_url("@cf/black-forest-labs/flux-1-schnell"),
                                     json={"prompt": "a cat", "steps": 1, "options": {"rejectIfBusy": True}},
                                     headers=AUTH) as response:
        assert response.status == 200, await response.text()
    async with emulator.session.post(emulator.run_url("@cf/huggingface/distilbert-sst-2-int8"),
                                     json={"text": "good", "options": {"rejectIfBusy": True}},
                                     headers=AUTH) as response:
        assert response.status == 200


async def test_every_batch_answer_is_in_the_openapi_description(emulator: Emulator) -> None:
    # gemma-4 inherits kimi-k2.6's output schema, which lists no batch answer; the description adds
    # the queued/running and finished shapes to every model whose catalog says async_queue.
    model = "@cf/google/gemma-4-26b-a4b-it"
    spec = build_spec()
    op = spec["paths"][f"/client/v4/accounts/{{account_id}}/ai/run/{model}"]["post"]
    validator = Draft202012Validator({**op["responses"]["200"]["content"]["application/json"]["schema"],
                                      "components": spec["components"]})
    status, body = await post(emulator, model, {"requests": [{"prompt": "Hi", "external_reference": "r1"}]})
    assert status == 200
    answers = [body]
    rid = body["result"]["request_id"]
    for _ in range(3):
        answers.append((await post(emulator, model, {"request_id": rid}))[1])
    assert [a["result"].get("status") for a in answers] == ["queued", "queued", "running", None]
    assert answers[-1]["result"]["responses"][0]["external_reference"] == "r1"
    for answer in answers:
        assert [e.message for e in validator.iter_errors(answer)] == []
