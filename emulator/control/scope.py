"""Which calls a stub or a fault applies to: model glob, surface, JSON-subset body match, prompt regex."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

import orjson
import re2

from emulator.call import Call, Surface

ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")


class SpecError(ValueError):
    """A stub or fault definition the control plane cannot accept (answered as HTTP 400)."""


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


@dataclass(slots=True)
class Scope:
    model: str | None = None  # exact name or glob (`@cf/meta/*`)
    surface: Surface | None = None
    body: dict[str, Any] | None = None  # JSON subset of the request body
    prompt: Any = None  # an RE2 pattern (compile_prompt), searched in the prompt / last user message
    # One account's calls only: a test that uses an account of its own (per-test isolation, one
    # binding connection string or REST account id per test) sees only its own stubs and faults.
    account: str | None = None

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Scope:
        model = spec.get("model")
        if model is not None and not isinstance(model, str):
            raise SpecError("`model` must be a model name or a glob")
        surface = spec.get("surface")
        try:
            parsed_surface = Surface(surface) if surface is not None else None
        except ValueError:
            raise SpecError(f"unknown surface {surface!r}; one of {[s.value for s in Surface]}") from None
        body = spec.get("body")
        if body is not None and not isinstance(body, dict):
            raise SpecError("`body` must be a JSON object (matched as a subset of the request body)")
        prompt = spec.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise SpecError("`prompt` must be a regular expression string")
        pattern = compile_prompt(prompt) if prompt is not None else None
        account = spec.get("account")
        if account is not None and not (isinstance(account, str) and ACCOUNT_ID.match(account)):
            raise SpecError("`account` must be a 32-hex-digit account id")
        return cls(model, parsed_surface, body, pattern, account)

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
