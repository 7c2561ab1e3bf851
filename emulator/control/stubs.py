"""Stubs: fixed answers (text, raw result, a sequence, or a Cloudflare error) for calls that match a scope.

A text stub becomes a `Generation`, rendered exactly as the text-generation fake renders its own,
so it streams on every surface and is billed by its token counts. The most recently added
matching stub wins (WireMock's rule), so a test can override a broad stub with a narrow one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from emulator.call import Call, Outcome, Usage
from emulator.control.faults import error_kind, make_error
from emulator.control.scope import Scope, SpecError
from emulator.errors import CFError
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
STUB_KEYS = frozenset({"id", "name", "model", "surface", "account", "body", "prompt", "results",
                       "times"}) | ANSWER_KEYS


@dataclass(slots=True)
class Answer:
    """One stubbed answer: exactly one of text, result or error."""

    text: str | None = None
    result: Any = None
    error: str | None = None  # catalogue kind
    finish_reason: str = "stop"
    has_result: bool = False

    @classmethod
    def parse(cls, spec: Any) -> Answer:
        if not isinstance(spec, dict):
            raise SpecError('an answer is {"text": …}, {"result": …} or {"error": code}')
        given = [k for k in ("text", "result", "error") if k in spec]
        if len(given) != 1:
            raise SpecError("an answer needs exactly one of `text`, `result` or `error`")
        if "text" in spec and not isinstance(spec["text"], str):
            raise SpecError("`text` must be a string")
        finish = spec.get("finish_reason", "stop")
        if finish not in ("stop", "length"):
            raise SpecError('`finish_reason` must be "stop" or "length"')
        return cls(
            text=spec.get("text"),
            result=spec.get("result"),
            error=error_kind(spec["error"]) if "error" in spec else None,
            finish_reason=finish,
            has_result="result" in spec,
        )

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
                "bad_input",
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
        if not isinstance(spec, dict):
            raise SpecError('a stub is a JSON object, e.g. {"model": "@cf/meta/*", "text": "Hi"}')
        unknown = set(spec) - STUB_KEYS
        if unknown:
            raise SpecError(f"unknown stub field(s) {sorted(unknown)}; known: {sorted(STUB_KEYS)}")
        if "results" in spec:
            if ANSWER_KEYS & set(spec) - {"finish_reason"}:
                raise SpecError("give either `results` (a sequence) or one of `text`/`result`/`error`")
            seq = spec["results"]
            if not isinstance(seq, list) or not seq:
                raise SpecError("`results` must be a non-empty list of answers")
            answers = [Answer.parse(item) for item in seq]
        else:
            answers = [Answer.parse({k: spec[k] for k in ANSWER_KEYS if k in spec})]
        times = spec.get("times")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise SpecError("`times` must be an integer >= 1")
        name = spec.get("name")
        if name is not None and not isinstance(name, str):
            raise SpecError("`name` must be a string")
        return cls(stub_id, Scope.parse(spec), answers, name, times)

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
