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


@dataclass(frozen=True, slots=True)
class Inference:
    """A behaviour Cloudflare does not document, which the emulator had to choose (no switch)."""

    surface: str
    behaviour: str
    basis: str  # what the choice follows


INFERENCES: tuple[Inference, ...] = (
    Inference("fine-tunes", "an unknown fine-tune in `lora` (or in a finetune-assets path) answers 3037 "
              "`AiError: AiError: Finetune <id> not found (<request id>)` with HTTP 404.",
              "the wording and code are real (cloudflare/cloudflare-docs#14757, #23272); "
              "the status is not shown"),
    Inference("fine-tunes", "creating a fine-tune checks the model (5007 unknown, 5005 without `lora`), a "
              "unique name per account, the reserved `cf-public-` prefix and the 30-per-account limit; "
              "asset uploads check the file name, `adapter_config.json` (JSON, `r` <= 32, `model_type` "
              "mistral/gemma/llama) and the safetensors header, refuse a second upload of the same file "
              "and files of 500 MB or more; refusals are 5006 (3006 for size).",
              "the limits on https://developers.cloudflare.com/workers-ai/features/fine-tunes/loras/; the "
              "codes and wording are the emulator's"),
    Inference("fine-tunes", "a fine-tune applies only to the model it was created for (5006 otherwise); "
              "the `cf-public-*` adapters apply to the two Mistral models the public-LoRA page lists; "
              "`finetune-assets` answers `{\"success\": true}` in the v4 envelope.",
              "the public-LoRA page; the SDK reads `success` from the body"),
    Inference("toMarkdown", "`tokens` is a number (the documented REST and binding examples); the SDK's "
              "type says string. Each result carries an `id`. An unrecognised file is a per-file error "
              "`Unsupported file type: <name>`; a request without `files` answers 3003.",
              "https://developers.cloudflare.com/workers-ai/features/markdown-conversion/usage/rest-api/"),
    Inference("toMarkdown", "the Markdown layout of XML (an outline), CSV and spreadsheets (tables under a "
              "heading per sheet) and the image description prompt.",
              "only HTML pre-processing and the PDF layout are documented (how-it-works page)"),
    Inference("realtime", "flux sends a first `Connected` message and `\"type\": \"TurnInfo\"` on turn "
              "messages; nova-3 speaks Deepgram's live `/v1/listen` messages (`Results`, `Metadata`, "
              "`Finalize`, `CloseStream`); aura sends `Metadata`, binary linear16 audio, `Flushed`, "
              "`Cleared`; smart-turn answers `{is_complete, probability}` per audio message.",
              "Deepgram's own WebSocket APIs, which Cloudflare serves; Cloudflare documents only flux's "
              "events and fields (catalog) and aura's Speak/Flush (changelog 2025-08-27)"),
    Inference("realtime", "a session is charged when it ends, at the pricing page's WebSocket rate where "
              "one is listed (nova-3 836.36 neurons per audio minute); the emulator's WebSocket "
              "sessions take linear16 audio only.",
              "the pricing page lists per-minute WebSocket prices, not when they are counted"),
)
