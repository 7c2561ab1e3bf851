"""Text Generation: prose from the seeded text fake, tool calls and JSON mode from schemas, native SSE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from emulator.call import Call, StreamEvent
from emulator.catalog import Model
from emulator.fakes import text as text_fake
from emulator.fakes import tokens
from emulator.fakes.from_schema import fake_from_schema
from emulator.fakes.seed import derive_seed, rng
from emulator.limits import output_tokens
from emulator.quirks import enabled
from emulator.tasks import FakeContext

PADDING_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789" * 3
DEFAULT_MAX_TOKENS = 256


@dataclass(slots=True)
class Generation:
    """The model-independent content of one answer; every surface renders it its own way."""

    text: str
    finish_reason: str  # "stop" | "length" | "tool_calls"
    prompt_tokens: int
    completion_tokens: int
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "arguments": dict}]
    reasoning: str | None = None
    limit: int | None = None  # the output-token cap the answer was generated under

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def responses_messages(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses body's prompt as chat messages: `instructions` as the system turn, then the input
    items (a function call as the assistant's turn with its name and arguments, a function result as
    a tool turn with its output)."""
    items = inputs["input"]
    messages: list[dict[str, Any]] = []
    instructions = inputs.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items:
        if not isinstance(item, dict):
            messages.append({"role": "user", "content": item})
        elif item.get("type") == "function_call":
            call = f"{item.get('name') or ''} {item.get('arguments') or ''}"
            messages.append({"role": "assistant", "content": call})
        elif item.get("type") == "function_call_output":
            messages.append({"role": "tool", "content": item.get("output")})
        else:
            messages.append(item)
    return messages


def prompt_tokens(inputs: dict[str, Any], model: str) -> int:
    """Prompt tokens as the model's tokenizer and chat template count them (emulator/fakes/tokens.py)."""
    if "prompt" in inputs:
        return max(1, tokens.prompt_text_tokens(model, str(inputs["prompt"])))
    if "input" in inputs:  # Responses form (gpt-oss)
        return max(1, tokens.chat_prompt_tokens(model, responses_messages(inputs), inputs.get("tools")))
    messages = inputs.get("messages") or []
    return max(1, tokens.chat_prompt_tokens(model, messages if isinstance(messages, list) else [],
                                            inputs.get("tools")))


def completion_tokens(model: str, text: str, limit: int, truncated: bool) -> int:
    """Tokens of the answer; an answer cut by the cap used exactly the cap, as a real one does."""
    if truncated:
        return limit
    return min(tokens.completion_tokens(model, text), limit)


def prose_tokens(model: str, answer: text_fake.Prose, limit: int) -> int:
    """`completion_tokens` of a drawn answer, summed from its sentences' counts in the sentence table."""
    if answer.truncated:
        return limit
    return min(answer.tokens_in(tokens.family_of(model)), limit)


def default_max_tokens(model: Model) -> int:
    schema = model.input_schema
    for branch in schema.get("oneOf") or [schema]:
        props = branch.get("properties", {}) if isinstance(branch, dict) else {}
        for key in ("max_tokens", "max_completion_tokens"):
            default = props.get(key, {}).get("default") if isinstance(props.get(key), dict) else None
            if isinstance(default, int):
                return default
    return DEFAULT_MAX_TOKENS


def _tools(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Normalise native `{name, description, parameters}` and OpenAI `{type, function}` tools."""
    tools = []
    for tool in inputs.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        nested = tool.get("function")
        fn = nested if isinstance(nested, dict) else tool
        if isinstance(fn.get("name"), str):
            tools.append({"name": fn["name"], "parameters": fn.get("parameters") or {"type": "object"}})
    return tools


def _arguments(parameters: Any, seed: int) -> dict[str, Any]:
    # Tool arguments are an object in every output schema, even when a tool declares odd parameters.
    value = fake_from_schema(parameters if isinstance(parameters, dict) else {"type": "object"}, rng(seed))
    return value if isinstance(value, dict) else {}


def _pick_tools(inputs: dict[str, Any], tools: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Which tools the fake model calls. `auto` calls one unless the last message is a tool result,
    so agent loops written against the emulator terminate."""
    if not tools:
        return []
    choice = inputs.get("tool_choice", "auto")
    if choice == "none":
        return []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        chosen = [t for t in tools if t["name"] == name]
        return chosen[:1] or tools[:1]
    if choice != "required" and _last_turn(inputs) == "tool":
        return []
    return [tools[seed % len(tools)]]


def _last_turn(inputs: dict[str, Any]) -> Any:
    """Who spoke last: a chat message's role; `tool` for a Responses `function_call_output` item."""
    messages = inputs.get("messages") or []
    if messages:
        return messages[-1].get("role") if isinstance(messages[-1], dict) else "user"
    items = inputs.get("input")
    if isinstance(items, list) and items and isinstance(items[-1], dict):
        return "tool" if items[-1].get("type") == "function_call_output" else items[-1].get("role", "user")
    return "user"


def _responses_format(inputs: dict[str, Any]) -> dict[str, Any] | None:
    """A Responses `text.format` (`{"type": "json_schema", "name", "schema"}` or `json_object`) in
    chat's `response_format` terms."""
    text = inputs.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return None
    return {"type": fmt["type"], "json_schema": {"schema": fmt.get("schema") or {"type": "object"}}}


def _json_mode(inputs: dict[str, Any], seed: int) -> str | None:
    fmt = inputs.get("response_format") or (
        {"type": "json_schema", "json_schema": inputs["guided_json"]} if inputs.get("guided_json") else None
    ) or _responses_format(inputs)
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema", spec) if isinstance(spec, dict) else {}
        return orjson.dumps(fake_from_schema(schema or {"type": "object"}, rng(seed))).decode()
    if fmt.get("type") == "json_object":
        text, _ = text_fake.prose(seed, 12)
        return orjson.dumps({"answer": text}).decode()
    return None


def _apply_stop(text: str, stop: Any) -> tuple[str, bool]:
    if not stop:
        return text, False
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str) and s]
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def generate(call: Call, ctx: FakeContext) -> Generation:
    """The deterministic answer to a text-generation call (shared by every surface)."""
    inputs = call.json_inputs
    traits = traits_of(call.model)
    limit = (inputs.get("max_completion_tokens") or inputs.get("max_tokens")
             or inputs.get("max_output_tokens") or traits.default_max_tokens)
    limit = output_tokens(int(limit) if isinstance(limit, (int, float)) else DEFAULT_MAX_TOKENS)
    name = call.model.name
    p_tokens = prompt_tokens(inputs, name)
    tool_calls = [{"name": t["name"],
                   "arguments": _arguments(t["parameters"], derive_seed(ctx.seed, t["name"]))}
                  for t in _pick_tools(inputs, _tools(inputs), ctx.seed)] if "tools" in inputs else []
    reasoning = None
    reasoning_tokens = 0
    if traits.reasoning:
        # Reasoning is generated output too: gpt-oss's 37 completion tokens for a tool call include it.
        thought = text_fake.compose(derive_seed(ctx.seed, "reasoning"), min(48, limit))
        reasoning = thought.text
        reasoning_tokens = thought.tokens_in(tokens.family_of(name)) if reasoning else 0
    if tool_calls:
        spent = sum(tokens.completion_tokens(name, orjson.dumps(t).decode()) for t in tool_calls)
        return Generation("", "tool_calls", p_tokens, spent + reasoning_tokens, tool_calls, reasoning, limit)
    json_text = _json_mode(inputs, ctx.seed)
    if json_text is not None:
        return Generation(json_text, "stop", p_tokens, completion_tokens(name, json_text, limit, False), [],
                          reasoning, limit)
    answer = text_fake.compose(ctx.seed, limit)
    text, stopped = _apply_stop(answer.text, inputs.get("stop"))
    if stopped:  # cut at a stop sequence: only the text before it was generated
        return Generation(text, "stop", p_tokens, completion_tokens(name, text, limit, False), [], reasoning,
                          limit)
    return Generation(text, "length" if answer.truncated else "stop", p_tokens,
                      prose_tokens(name, answer, limit), [], reasoning, limit)


def choices_wanted(call: Call) -> int:
    """`n` where the model's input schema declares it (frontier models, 1–128) and the answer is not
    streamed; 1 otherwise (other models' schemas have no `n`: the serving path never sees it)."""
    n = call.json_inputs.get("n")
    if call.stream or isinstance(n, bool) or not isinstance(n, int) or n <= 1:
        return 1
    return n if "n" in call.model.input_properties else 1


@dataclass(frozen=True, slots=True)
class Traits:
    """What generation reads from a model's catalog entry, worked out once per model."""

    chat_completion: bool  # native output is an OpenAI chat.completion object
    default_max_tokens: int
    reasoning: bool


_TRAITS: dict[str, tuple[dict[str, Any], Traits]] = {}


def traits_of(model: Model) -> Traits:
    """The model's traits, kept by name while its schema is the same object (catalog models are)."""
    kept = _TRAITS.get(model.name)
    if kept is not None and kept[0] is model.schema:
        return kept[1]
    traits = Traits(chat_completion=is_chat_completion_model(model),
                    default_max_tokens=default_max_tokens(model), reasoning=model.flag("reasoning"))
    _TRAITS[model.name] = (model.schema, traits)
    return traits


def is_chat_completion_model(model: Model) -> bool:
    """Frontier models whose native output is an OpenAI chat.completion object (catalog schema)."""
    out = model.output_schema
    for branch in out.get("oneOf") or [out]:
        if isinstance(branch, dict) and "choices" in (branch.get("properties") or {}):
            return True
    return False


def native_result(gen: Generation) -> dict[str, Any]:
    result: dict[str, Any] = {"response": gen.text}
    if gen.tool_calls:
        result["tool_calls"] = gen.tool_calls
    result["usage"] = gen.usage
    return result


def padding(seed: int, index: int) -> str:
    return PADDING_ALPHABET[: 1 + derive_seed(seed, index) % 46]


def native_events(gen: Generation, seed: int, quirks: dict[str, bool]) -> list[StreamEvent]:
    """The native `/ai/run` SSE framing (fixtures/real/run-stream-sse-p-padding.json): tokens with `p`,
    an empty event, usage, [DONE]."""
    pad = enabled(quirks, "stream-padding")
    events = []
    for i, chunk in enumerate(text_fake.split_tokens(gen.text)):
        body: dict[str, Any] = {"response": chunk}
        if pad:
            body["p"] = padding(seed, i)
        events.append(StreamEvent(orjson.dumps(body).decode()))
    if gen.tool_calls:
        events.append(StreamEvent(orjson.dumps({"response": "", "tool_calls": gen.tool_calls}).decode()))
    events.append(StreamEvent('{"response":""}'))
    events.append(StreamEvent(orjson.dumps({"response": "", "usage": gen.usage}).decode()))
    events.append(StreamEvent("[DONE]"))
    return events
