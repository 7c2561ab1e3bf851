"""Cloudflare oddities the emulator reproduces on purpose, each with its evidence and an off switch.

Tests written against the emulator must see what production will do, so every quirk is ON by
default; `serve --quirk NAME=off` (or the `quirks` setting) turns one off. This table is the one
place that lists them; docs/quirks.md and `workers-ai-emulator quirks` are generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quirk:
    name: str
    behaviour: str  # what the emulator does while the quirk is on
    when_off: str  # what it does instead
    evidence: str  # where the behaviour was seen (shared/reference/...)


QUIRKS: dict[str, Quirk] = {
    q.name: q
    for q in [
        Quirk(
            "double-slash-path",
            "`/client/v4/accounts/{id}//ai/...` (a doubled slash before `ai`) is served like `/ai/...`.",
            "a doubled slash is an unknown path (7000 No route for that URI).",
            "reference/seed-guide.md §1: the guide's curl example uses `//ai` and the real edge accepts it.",
        ),
        Quirk(
            "v1-errors-not-openai-shaped",
            'errors on `/ai/v1/*` use the v4 envelope (`errors` array), not OpenAI\'s `{"error": {...}}`.',
            "errors on `/ai/v1/*` also carry an OpenAI-style `error` object (type, code, message).",
            "reference/workers-ai-api.md §3.4; real-responses/err-5006-schema-v1-content-array.json.",
        ),
        Quirk(
            "no-role-in-first-delta",
            "the first `chat.completion.chunk` delta has no `role` key.",
            'the first delta carries `"role": "assistant"` as OpenAI sends it.',
            "reference/workers-ai-api.md §5.2; "
            "real-responses/gateway-compat-stream-llama31-8b.cassette.json.",
        ),
        Quirk(
            "stream-usage-on-finish-chunk",
            "with `stream_options.include_usage`, `/ai/v1/chat/completions` streams put the real usage "
            "on the `finish_reason` chunk, then send a second chunk with all-zero usage.",
            "one trailing chunk with `choices: []` and the real usage, as OpenAI sends it.",
            "reference/workers-ai-api.md §5.2; "
            "real-responses/gateway-compat-stream-llama31-8b.cassette.json.",
        ),
        Quirk(
            "embeddings-ignore-base64",
            '`/ai/v1/embeddings` ignores `encoding_format: "base64"` and answers float arrays (the '
            "OpenAI Node SDK then decodes them to all-zero vectors).",
            '`encoding_format: "base64"` answers base64 of little-endian float32, as OpenAI does.',
            "real-responses/v1-embeddings-base64-ignored-observation-2026-08.json "
            "(karakeep-app/karakeep#2698).",
        ),
        Quirk(
            "stream-padding",
            "native `/ai/run` SSE token events carry a random-length `p` padding field.",
            'token events are `{"response": ...}` only.',
            "real-responses/run-stream-sse-p-padding-discord-2025-03.json.",
        ),
        Quirk(
            "validation-error-prefix",
            "5006 messages read `AiError: Bad input: Error: ...` except additional-property errors, "
            "which have no inner `Error: ` (as captured for flux-1-schnell).",
            "every 5006 message uses `AiError: Bad input: Error: ...`.",
            "real-responses/err-5006-flux-width-height.json vs err-5006-schema-v1-content-array.json.",
        ),
        Quirk(
            "daily-limit-crossing-call-allowed",
            "on the free plan the call that crosses 10,000 neurons still succeeds; the next one gets 4006.",
            "a call whose estimated cost would cross the allowance is refused up front.",
            "reference/workers-ai-api.md §7 (a hard stop once the day's allocation is used up).",
        ),
        Quirk(
            "daily-limit-concurrent-calls-cross",
            "on the free plan every call admitted while the day was under 10,000 neurons completes, "
            "however many were in flight: concurrent calls can take the day past the allowance by the "
            "cost of all of them together (300 calls at once on a 200-neuron allowance: ~177%).",
            "only one call may cross the allowance: a call whose charge finds the wall already reached "
            "by calls that finished while it ran is refused with 4006 and not charged (within one "
            "process; `--workers` processes each see the others' charges at their next commit).",
            "reference/workers-ai-api.md §7 and real-responses/headers-and-billing-observed.json: a call's "
            "cost is only known once it finished (`cf-ai-neurons`, e.g. 1363.64 for one flux-2-klein-9b "
            "call), so admission can only see finished calls; err-4006-daily-neurons-binding-and-misc.json: "
            "the block applies to requests arriving after the allowance is used up. No capture shows a "
            "reservation of in-flight cost, nor how far real concurrent calls overshoot.",
        ),
    ]
}


def parse_quirk_flags(flags: list[str] | tuple[str, ...]) -> dict[str, bool]:
    """`NAME=off|on` strings → {name: enabled}; an unknown name or value is a loud error."""
    result: dict[str, bool] = {}
    for flag in flags:
        name, _, value = flag.partition("=")
        name = name.strip()
        if name not in QUIRKS:
            raise ValueError(f"unknown quirk {name!r}; known: {', '.join(sorted(QUIRKS))}")
        value = value.strip().lower() or "off"
        if value not in ("on", "off", "true", "false", "1", "0"):
            raise ValueError(f"quirk {name}: expected on or off, got {value!r}")
        result[name] = value in ("on", "true", "1")
    return result


def enabled(overrides: dict[str, bool], name: str) -> bool:
    if name not in QUIRKS:
        raise KeyError(name)
    return overrides.get(name, True)
