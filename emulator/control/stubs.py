"""Stubs: fixed answers (text, raw result, a sequence, or a Cloudflare error) for calls that match a scope.

A text stub becomes a `Generation`, rendered exactly as the text-generation fake renders its own,
so it streams on every surface and is billed by its token counts. The most recently added
matching stub wins (WireMock's rule), so a test can override a broad stub with a narrow one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from emulator.call import Call, Outcome, Usage
from emulator.control.faults import error_kind, make_error
from emulator.control.scope import Scope, ScopeSpec, SpecError, SpecModel
from emulator.errors import CFError, ErrorKind
from emulator.fakes import tokens
from emulator.fakes.seed import derive_seed
from emulator.tasks.openai_shapes import chat_completion
from emulator.tasks.text_generation import (
    Generation,
    is_chat_completion_model,
    native_events,
    native_result,
    prompt_tokens,
)

TEXT_GENERATION = "Text Generation"
ANSWER_KEYS = frozenset({"text", "result", "error", "finish_reason"})


class Answer(SpecModel):
    """One stubbed answer: exactly one of text, result or error (fields beside them are ignored)."""

    model_config = ConfigDict(extra="ignore")
    NOT_AN_OBJECT: ClassVar[str] = 'an answer is {"text": …}, {"result": …} or {"error": code}'
    MESSAGES: ClassVar[dict[str, str]] = {
        "text": "`text` must be a string",
        "finish_reason": '`finish_reason` must be "stop" or "length"',
    }

    text: str | None = None
    result: Any = None
    error: ErrorKind | None = None
    finish_reason: Literal["stop", "length"] = "stop"

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, spec: Any) -> Any:
        if not isinstance(spec, dict):
            raise SpecError(cls.NOT_AN_OBJECT)
        if len([k for k in ("text", "result", "error") if k in spec]) != 1:
            raise SpecError("an answer needs exactly one of `text`, `result` or `error`")
        return spec

    @field_validator("text", mode="before")
    @classmethod
    def _text_given(cls, value: Any) -> Any:
        if value is None:
            raise SpecError("`text` must be a string")
        return value

    @field_validator("error", mode="before")
    @classmethod
    def _error_kind(cls, value: Any) -> ErrorKind:
        return error_kind(value)

    @property
    def has_result(self) -> bool:
        return "result" in self.model_fields_set

    def describe(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        if self.text is not None:
            return {"text": self.text, "finish_reason": self.finish_reason}
        return {"result": self.result}

    def outcome(self, call: Call, emulator_seed: int, quirks: dict[str, bool]) -> Outcome:
        if self.error is not None:
            raise make_error(self.error, call)
        if self.text is None:
            return Outcome(result=self.result)
        if call.model.task.name != TEXT_GENERATION:
            raise CFError(
                ErrorKind.BAD_INPUT,
                detail=f"Emulator stub: `text` answers only fit Text Generation models; "
                f"{call.model.name} is {call.model.task.name} (use `result`)",
            )
        return text_outcome(call, self.text, self.finish_reason, emulator_seed, quirks)


def text_outcome(
    call: Call, text: str, finish_reason: str, emulator_seed: int, quirks: dict[str, bool]
) -> Outcome:
    """What the text-generation fake would answer had the model said `text`."""
    gen = Generation(text, finish_reason, prompt_tokens(call.json_inputs, call.model.name),
                     tokens.completion_tokens(call.model.name, text))
    seed = derive_seed(emulator_seed, call.model.name, text)
    usage = Usage(input_tokens=gen.prompt_tokens, output_tokens=gen.completion_tokens)
    extras = {"generation": gen}
    if call.stream:
        return Outcome(
            events=native_events(gen, seed, quirks),
            content_type="text/event-stream",
            usage=usage,
            extras=extras,
        )
    if is_chat_completion_model(call.model):
        return Outcome(result=chat_completion(gen, call.model.name, seed), usage=usage, extras=extras)
    return Outcome(result=native_result(gen), usage=usage, extras=extras)


class StubSpec(ScopeSpec):
    """A stub as POSTed to /__emulator__/stubs: one answer (`text`, `result` or `error`) or `results`."""

    WHAT: ClassVar[str] = "stub"
    NOT_AN_OBJECT: ClassVar[str] = 'a stub is a JSON object, e.g. {"model": "@cf/meta/*", "text": "Hi"}'
    MESSAGES: ClassVar[dict[str, str]] = {
        **ScopeSpec.MESSAGES,
        "results": "`results` must be a non-empty list of answers",
        "times": "`times` must be an integer >= 1",
        "name": "`name` must be a string",
    }

    id: Any = None  # accepted and ignored: the server names its stubs
    results: list[Answer] = Field(min_length=1)
    times: int | None = Field(default=None, ge=1)
    name: str | None = None

    @classmethod
    def known_fields(cls) -> frozenset[str]:
        return super().known_fields() | ANSWER_KEYS

    @model_validator(mode="before")
    @classmethod
    def _one_answer_or_results(cls, spec: Any) -> Any:
        """A single answer given at the top level is a sequence of one."""
        answer = {k: spec[k] for k in ANSWER_KEYS if k in spec}
        rest = {k: v for k, v in spec.items() if k not in ANSWER_KEYS}
        if "results" not in spec:
            return {**rest, "results": [answer]}
        if set(answer) - {"finish_reason"}:
            raise SpecError("give either `results` (a sequence) or one of `text`/`result`/`error`")
        return rest


@dataclass(slots=True)
class Stub:
    id: str
    scope: Scope
    answers: list[Answer]
    name: str | None = None
    times: int | None = None  # stop matching after this many answers
    calls: int = 0

    @classmethod
    def parse(cls, spec: Any, *, stub_id: str) -> Stub:
        parsed = StubSpec.parse(spec)
        return cls(stub_id, parsed.scope(), parsed.results, parsed.name, parsed.times)

    def take(self) -> Answer:
        """The next answer of the sequence; the last one repeats."""
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.calls >= self.times

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            **self.scope.describe(),
            "results": [a.describe() for a in self.answers],
            "times": self.times,
            "calls": self.calls,
            "exhausted": self.exhausted,
        }


class StubSet:
    """The stubs of one server; the newest matching stub answers."""

    def __init__(self) -> None:
        self._stubs: list[Stub] = []
        self._ids = itertools.count(1)

    def add(self, spec: Any) -> Stub:
        stub = Stub.parse(spec, stub_id=f"stub-{next(self._ids)}")
        self._stubs.append(stub)
        return stub

    def all(self) -> list[Stub]:
        return list(self._stubs)

    def __len__(self) -> int:
        return len(self._stubs)

    def remove(self, key: str) -> bool:
        before = len(self._stubs)
        self._stubs = [s for s in self._stubs if key not in (s.id, s.name)]
        return len(self._stubs) != before

    def forget(self, account: str) -> None:
        """Remove the stubs scoped to one account."""
        self._stubs = [s for s in self._stubs if s.scope.account != account]

    def clear(self) -> None:
        self._stubs.clear()
        self._ids = itertools.count(1)

    def find(self, call: Call) -> Stub | None:
        for stub in reversed(self._stubs):
            if not stub.exhausted and stub.scope.matches(call):
                return stub
        return None

    def pick(self, call: Call) -> tuple[Stub, Answer] | None:
        """The stub that answers `call` and the answer it gives (counted as taken)."""
        stub = self.find(call)
        return None if stub is None else (stub, stub.take())

    def answer(self, call: Call, emulator_seed: int, quirks: dict[str, bool]) -> Outcome | None:
        picked = self.pick(call)
        return None if picked is None else picked[1].outcome(call, emulator_seed, quirks)
