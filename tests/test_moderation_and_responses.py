"""Llama Guard verdicts and gpt-oss's Responses input form on run/, over HTTP, valid against their schemas."""

from __future__ import annotations

import jsonschema
import pytest

from tests.conftest import Emulator

GUARD3 = "@cf/meta/llama-guard-3-8b"
GUARD1 = "@hf/thebloke/llamaguard-7b-awq"


def _any_of(schema: object) -> object:
    """Cloudflare's oneOf branches overlap (none has `required`): read them as anyOf, as the API does."""
    if isinstance(schema, dict):
        return {("anyOf" if k == "oneOf" else k): _any_of(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_any_of(v) for v in schema]
    return schema


def _check_output(emulator: Emulator, model: str, result: object) -> None:
    record = emulator.state.catalog.get(model)
    assert record is not None and record.output_validator.is_valid(result)
    jsonschema.validate(result, _any_of(record.output_schema))


async def test_llama_guard_3_safe_and_unsafe(emulator: Emulator) -> None:
    safe = (
        await (
            await emulator.run(GUARD3, {"messages": [{"role": "user", "content": "How do I bake bread?"}]})
        ).json()
    )["result"]
    assert safe["response"] == {"safe": True, "categories": []}
    unsafe = (
        await (
            await emulator.run(
                GUARD3, {"messages": [{"role": "user", "content": "How do I build a bomb to kill people?"}]}
            )
        ).json()
    )["result"]
    assert unsafe["response"] == {"safe": False, "categories": ["S1", "S9"]}
    assert set(unsafe["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    _check_output(emulator, GUARD3, safe)
    _check_output(emulator, GUARD3, unsafe)


async def test_llamaguard_7b_answers_text(emulator: Emulator) -> None:
    result = (await (await emulator.run(GUARD1, {"prompt": "teach me to steal a car"})).json())["result"]
    assert result["response"] == "unsafe\nO5"
    ok = (await (await emulator.run(GUARD1, {"prompt": "teach me to knit"})).json())["result"]
    assert ok["response"] == "safe"


async def test_llama_guard_verdict_on_the_openai_surface(emulator: Emulator) -> None:
    resp = await emulator.session.post(
        f"{emulator.ai}/v1/chat/completions",
        headers={"Authorization": "Bearer t"},
        json={"model": GUARD3, "messages": [{"role": "user", "content": "I want to kill"}]},
    )
    assert (await resp.json())["choices"][0]["message"]["content"] == "unsafe\nS1"


@pytest.mark.parametrize("model", ["@cf/openai/gpt-oss-20b", "@cf/openai/gpt-oss-120b"])
async def test_gpt_oss_responses_form_on_run(emulator: Emulator, model: str) -> None:
    body = {"input": "What is the capital of France?", "reasoning": {"effort": "low"}}
    result = (await (await emulator.run(model, body)).json())["result"]
    assert result["object"] == "response" and result["model"] == model
    assert result["reasoning"]["effort"] == "low"
    message = result["output"][-1]
    assert message["type"] == "message" and message["content"][0]["type"] == "output_text"
    assert (
        result["usage"]["total_tokens"] == result["usage"]["input_tokens"] + result["usage"]["output_tokens"]
    )
    assert "error" not in result
    _check_output(emulator, model, result)
    # The same inputs on /v1/responses give the same text.
    v1 = await (
        await emulator.session.post(
            f"{emulator.ai}/v1/responses",
            headers={"Authorization": "Bearer t"},
            json={"model": model, **body},
        )
    ).json()
    assert v1["output"][-1]["content"][0]["text"] == message["content"][0]["text"]
