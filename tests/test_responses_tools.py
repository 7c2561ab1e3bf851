"""`/v1/responses` on gpt-oss: instructions, tools, function calls and their results, the object's shape."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import orjson
import pytest

from emulator.fakes import tokens
from tests.conftest import AUTH, TOKEN, Emulator

GPT_OSS = "@cf/openai/gpt-oss-20b"
WEATHER = {
    "type": "function", "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}},
}
CLOCK = {"type": "function", "name": "get_time",
         "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
QUESTION = [{"role": "user", "content": "What is the weather in Lisbon?"}]
# vLLM's ResponsesResponse fields, in its order (the emulator adds none and leaves none out).
FIELDS = ["id", "created_at", "incomplete_details", "instructions", "metadata", "model", "object", "output",
          "parallel_tool_calls", "temperature", "tool_choice", "tools", "top_p", "background",
          "max_output_tokens", "max_tool_calls", "previous_response_id", "prompt", "reasoning",
          "service_tier", "status", "text", "top_logprobs", "truncation", "usage", "user"]


async def responses(emulator: Emulator, body: dict[str, Any]) -> tuple[int, Any]:
    async with emulator.session.post(f"{emulator.ai}/v1/responses", json={"model": GPT_OSS, **body},
                                     headers=AUTH) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_instructions_count_as_input_tokens_and_are_echoed(emulator: Emulator) -> None:
    instructions = "You are a terse meteorologist who answers in one sentence."
    _, plain = await responses(emulator, {"input": QUESTION})
    status, told = await responses(emulator, {"input": QUESTION, "instructions": instructions})
    assert status == 200 and plain["instructions"] is None and told["instructions"] == instructions
    added = told["usage"]["input_tokens"] - plain["usage"]["input_tokens"]
    # A system turn of the model's chat template, as counted for chat completions.
    system = [{"role": "system", "content": instructions}, *QUESTION]
    expected = tokens.chat_prompt_tokens(GPT_OSS, system) - tokens.chat_prompt_tokens(GPT_OSS, QUESTION)
    assert added == expected > 0
    assert told["output"][-1]["content"][0]["text"] != plain["output"][-1]["content"][0]["text"]


async def test_the_object_has_the_engines_full_shape_and_echoes_the_knobs(emulator: Emulator) -> None:
    _, body = await responses(emulator, {"input": "hi"})
    assert list(body) == FIELDS
    assert (body["object"], body["status"], body["incomplete_details"]) == ("response", "completed", None)
    assert (body["temperature"], body["top_p"], body["truncation"], body["tool_choice"]) == (1.0, 1.0,
                                                                                           "disabled", "auto")
    assert body["tools"] == [] and body["previous_response_id"] is None and body["text"] is None
    knobs = {"temperature": 0.2, "top_p": 0.9, "truncation": "auto", "metadata": {"run": "7"},
             "previous_response_id": "resp_abc", "user": "u-1", "text": {"format": {"type": "text"}},
             "max_output_tokens": 300}
    _, echoed = await responses(emulator, {"input": "hi", **knobs})
    assert {k: echoed[k] for k in knobs} == knobs


async def test_max_output_tokens_cuts_the_answer_and_marks_it_incomplete(emulator: Emulator) -> None:
    _, body = await responses(emulator, {"input": "Tell me a long story about lighthouses.",
                                         "max_output_tokens": 5})
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["max_output_tokens"] == 5
    usage = body["usage"]
    assert usage["output_tokens"] - usage["output_tokens_details"]["reasoning_tokens"] == 5  # the cap


async def test_text_format_json_schema_answers_json_valid_against_it(emulator: Emulator) -> None:
    schema = {"type": "object", "required": ["city", "temperature"], "additionalProperties": False,
              "properties": {"city": {"type": "string"}, "temperature": {"type": "number"}}}
    text = {"format": {"type": "json_schema", "name": "weather", "schema": schema}}
    status, body = await responses(emulator, {"input": QUESTION, "text": text})
    assert status == 200 and body["text"] == text
    jsonschema.validate(orjson.loads(body["output"][-1]["content"][0]["text"]), schema)


async def test_a_function_call_round_trip(emulator: Emulator) -> None:
    tools = [WEATHER, CLOCK]
    status, first = await responses(emulator, {"input": QUESTION, "tools": tools,
                                               "tool_choice": {"type": "function", "name": "get_weather"}})
    assert status == 200, first
    assert [item["type"] for item in first["output"]] == ["reasoning", "function_call"]
    call = first["output"][1]
    assert list(call) == ["arguments", "call_id", "name", "type", "id", "status"]
    assert call["name"] == "get_weather" and call["call_id"].startswith("call_")
    assert call["id"] == "fc_" + call["call_id"].removeprefix("call_")
    jsonschema.validate(orjson.loads(call["arguments"]), WEATHER["parameters"])  # valid against the tool
    assert first["tools"][0] == {"name": "get_weather", "parameters": WEATHER["parameters"], "strict": None,
                                 "type": "function", "description": "Weather for a city."}
    assert first["tool_choice"] == {"type": "function", "name": "get_weather"}
    # The follow-up carries the call and its result: the model answers in words.
    follow_up = [*QUESTION, call, {"type": "function_call_output", "call_id": call["call_id"],
                                   "output": '{"temperature": 21, "unit": "celsius"}'}]
    status, second = await responses(emulator, {"input": follow_up, "tools": tools})
    assert status == 200, second
    assert [item["type"] for item in second["output"]] == ["reasoning", "message"]
    assert second["output"][1]["content"][0]["text"]
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"]  # the call and its output count


async def test_auto_and_required_choose_a_tool_and_none_does_not(emulator: Emulator) -> None:
    for choice in ("auto", "required"):
        _, body = await responses(emulator, {"input": QUESTION, "tools": [WEATHER], "tool_choice": choice})
        assert body["output"][-1]["type"] == "function_call" and body["output"][-1]["name"] == "get_weather"
    _, body = await responses(emulator, {"input": QUESTION, "tools": [WEATHER], "tool_choice": "none"})
    assert body["output"][-1]["type"] == "message"


async def test_the_same_call_on_run_answers_the_same_function_call(emulator: Emulator) -> None:
    inputs = {"input": QUESTION, "tools": [WEATHER], "instructions": "Be brief."}
    _, v1 = await responses(emulator, inputs)
    resp = await emulator.run(GPT_OSS, inputs)
    native = (await resp.json())["result"]
    assert native["output"][-1]["arguments"] == v1["output"][-1]["arguments"]
    assert native["usage"] == v1["usage"]


@pytest.mark.parametrize(("body", "wording"), [
    ({"input": [*QUESTION, {"type": "function_call_output", "call_id": "call_x", "output": "1"}]},
     "No call message found for call_x"),
    ({"input": "hi", "instructions": 5}, "Type mismatch of '/instructions', 'number' not in 'string'"),
    ({"input": "hi", "tools": {"name": "x"}}, "Type mismatch of '/tools', 'object' not in 'array'"),
    ({"input": "hi", "tools": [{"type": "function", "parameters": {}}]},
     "required properties at '/tools/0' are 'name'"),
])
async def test_bad_responses_bodies_are_5006(emulator: Emulator, body: dict[str, Any], wording: str) -> None:
    status, payload = await responses(emulator, body)
    assert (status, payload["errors"][0]["code"]) == (400, 5006)
    assert wording in payload["errors"][0]["message"]


def _sdk_round_trip(base_url: str) -> tuple[Any, Any]:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=TOKEN, max_retries=0)
    first = client.responses.create(model=GPT_OSS, input=QUESTION, tools=[WEATHER],  # type: ignore[arg-type,list-item]
                                    tool_choice="required", instructions="Use the tools.")
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(model=GPT_OSS, tools=[WEATHER],  # type: ignore[list-item]
                                     input=[*QUESTION, call.model_dump(),  # type: ignore[list-item]
                                            {"type": "function_call_output", "call_id": call.call_id,
                                             "output": "sunny"}])
    return first, second


async def test_the_openai_sdk_round_trips_a_function_call(emulator: Emulator) -> None:
    first, second = await asyncio.to_thread(_sdk_round_trip, f"{emulator.ai}/v1")
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    jsonschema.validate(orjson.loads(call.arguments), WEATHER["parameters"])
    assert first.instructions == "Use the tools." and first.status == "completed"
    assert second.output_text and second.output[-1].type == "message"
