"""Which calls a stub or a fault applies to: model glob, surface, JSON-subset body match, prompt regex."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

import orjson
import re2
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from emulator.call import Call, Surface

ACCOUNT_PATTERN = r"^[0-9a-f]{32}$"
ACCOUNT_ID = re.compile(ACCOUNT_PATTERN)


class SpecError(ValueError):
    """A stub or fault definition the control plane cannot accept (answered as HTTP 400)."""


class SpecModel(BaseModel):
    """A control-plane spec (a fault, a stub, a stubbed answer, a latency) parsed by pydantic.

    A refusal is one SpecError in the control plane's own wording: a validator raises SpecError with
    its message (pydantic keeps the exception), and a value pydantic's own types or constraints refuse
    is answered with `MESSAGES[field]`. Unknown fields are named before anything else is checked.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, arbitrary_types_allowed=True)

    WHAT: ClassVar[str] = "spec"  # "unknown {WHAT} field(s) …"
    NOT_AN_OBJECT: ClassVar[str] = "a spec is a JSON object"
    MESSAGES: ClassVar[dict[str, str]] = {}

    @classmethod
    def known_fields(cls) -> frozenset[str]:
        return frozenset(cls.model_fields)

    @classmethod
    def parse(cls, spec: Any) -> Self:
        if not isinstance(spec, dict):
            raise SpecError(cls.NOT_AN_OBJECT)
        if cls.model_config.get("extra") == "forbid":
            unknown = set(spec) - cls.known_fields()
            if unknown:
                raise SpecError(
                    f"unknown {cls.WHAT} field(s) {sorted(unknown)}; known: {sorted(cls.known_fields())}"
                )
        try:
            return cls.model_validate(spec)
        except ValidationError as exc:
            raise SpecError(cls.wording(exc.errors()[0])) from None

    @classmethod
    def wording(cls, error: ErrorDetails) -> str:
        """The message for pydantic's first error: a SpecError's own, else the refused field's."""
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, SpecError):
            return str(cause)
        names = [part for part in error["loc"] if isinstance(part, str)]
        model: type[SpecModel] = cls
        # Down through nested specs: a stub's `results`, a fault's `latency_ms`.
        while len(names) > 1 and (nested := _nested_spec(model, names[0])) is not None:
            model, names = nested, names[1:]
        return model.MESSAGES.get(names[0], error["msg"]) if names else error["msg"]


def _nested_spec(model: type[SpecModel], name: str) -> type[SpecModel] | None:
    """The spec model a field holds (`Answer` for `list[Answer] | None`), if any."""
    field = model.model_fields.get(name)
    pending = [field.annotation] if field is not None else []
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, SpecModel):
            return annotation
        pending += getattr(annotation, "__args__", ())
    return None


# Prompt patterns are RE2 (google-re2): matching takes time linear in the prompt whatever the
# pattern, so no stub can stall the event loop the way `(a+)+$` does under backtracking engines.
# RE2 has no backreferences or lookaround; such a pattern is refused when the stub is added.
MAX_PATTERN_LENGTH = 2000
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is answered as a 400, not logged by the C++ side


def compile_prompt(pattern: str) -> Any:
    """A stub's `prompt` regular expression, compiled by RE2; SpecError when RE2 cannot take it."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise SpecError(f"`prompt` is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        first = exc.args[0] if exc.args else exc
        reason = first.decode("utf-8", "replace") if isinstance(first, bytes) else first
        raise SpecError(f"`prompt` is not a valid RE2 regular expression: {reason}") from None


def json_subset(pattern: Any, value: Any) -> bool:
    """True when every key of `pattern` is in `value` with a matching value (lists: same length, pairwise)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and json_subset(v, value[k]) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return (
            isinstance(value, list)
            and len(pattern) == len(value)
            and all(json_subset(p, v) for p, v in zip(pattern, value, strict=True))
        )
    if isinstance(pattern, bool) or isinstance(value, bool):
        return pattern is value  # True must not match 1
    return bool(pattern == value)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text(part) for part in content)
    if isinstance(content, dict):
        return str(content.get("text") or "")
    return ""


def prompt_text(body: dict[str, Any]) -> str:
    """The prompt, or the last user message, or the Responses `input`, or `text`: what a regex looks at."""
    if isinstance(body.get("prompt"), str):
        return str(body["prompt"])
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text(message.get("content"))
    if "input" in body:
        items = body["input"]
        if isinstance(items, str):
            return items
        if isinstance(items, list):
            users = [i for i in items if isinstance(i, dict) and i.get("role", "user") == "user"]
            return _text(users[-1].get("content")) if users else ""
    return _text(body.get("text"))


def request_body(call: Call) -> dict[str, Any]:
    """The JSON body as the client sent it (OpenAI bodies before translation), else the inputs."""
    if call.raw_body[:1] == b"{":
        try:
            value = orjson.loads(call.raw_body)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    return call.json_inputs


def _surface(value: Any) -> Surface | None:
    try:
        return None if value is None else Surface(value)
    except ValueError:
        raise SpecError(f"unknown surface {value!r}; one of {[s.value for s in Surface]}") from None


def _prompt_pattern(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError("`prompt` must be a regular expression string")
    return compile_prompt(value)


class ScopeSpec(SpecModel):
    """The fields of a fault or a stub that choose the calls it applies to."""

    MESSAGES: ClassVar[dict[str, str]] = {
        "model": "`model` must be a model name or a glob",
        "body": "`body` must be a JSON object (matched as a subset of the request body)",
        "account": "`account` must be a 32-hex-digit account id",
    }

    model: str | None = None
    surface: Annotated[Surface | None, BeforeValidator(_surface)] = None
    body: dict[str, Any] | None = None
    prompt: Annotated[Any, BeforeValidator(_prompt_pattern)] = None  # compiled by RE2
    account: str | None = Field(default=None, pattern=ACCOUNT_PATTERN)

    def scope(self) -> Scope:
        return Scope(self.model, self.surface, self.body, self.prompt, self.account)


@dataclass(slots=True)
class Scope:
    model: str | None = None  # exact name or glob (`@cf/meta/*`)
    surface: Surface | None = None
    body: dict[str, Any] | None = None  # JSON subset of the request body
    prompt: Any = None  # an RE2 pattern (compile_prompt), searched in the prompt / last user message
    # One account's calls only: a test that uses an account of its own (per-test isolation, one
    # binding connection string or REST account id per test) sees only its own stubs and faults.
    account: str | None = None

    def matches(self, call: Call) -> bool:
        if self.model is not None and not (
            call.model.name == self.model or fnmatch.fnmatchcase(call.model.name, self.model)
        ):
            return False
        if self.surface is not None and call.surface is not self.surface:
            return False
        if self.account is not None and call.account_id != self.account:
            return False
        if self.body is None and self.prompt is None:
            return True
        body = request_body(call)
        if self.body is not None and not (
            json_subset(self.body, body) or json_subset(self.body, call.json_inputs)
        ):
            return False
        return (
            self.prompt is None
            or self.prompt.search(prompt_text(body) or prompt_text(call.json_inputs)) is not None
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "surface": self.surface.value if self.surface else None,
            "body": self.body,
            "prompt": self.prompt.pattern if self.prompt else None,
            "account": self.account,
        }
