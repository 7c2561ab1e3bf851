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
    evidence: str  # where the behaviour was seen: a public URL or a file shipped in fixtures/


QUIRKS: dict[str, Quirk] = {
    q.name: q
    for q in [
        Quirk(
            "double-slash-path",
            "`/client/v4/accounts/{id}//ai/...` (a doubled slash before `ai`) is served like `/ai/...`.",
            "a doubled slash is an unknown path (7000 No route for that URI).",
            "the widely shared free-model guide's curl examples use `…/accounts/{AccountID}//ai/v1/…`, "
            "and its users report that they work (no capture of the answer is shipped).",
        ),
        Quirk(
            "v1-errors-not-openai-shaped",
            'errors on `/ai/v1/*` use the v4 envelope (`errors` array), not OpenAI\'s `{"error": {...}}`.',
            "errors on `/ai/v1/*` also carry an OpenAI-style `error` object (type, code, message).",
            "fixtures/real/err-5006-schema-v1-content-array.json "
            "(a real 400 from `/ai/v1/chat/completions`).",
        ),
        Quirk(
            "no-role-in-first-delta",
            "the first `chat.completion.chunk` delta of a Llama-family stream has no `role` key (gpt-oss, "
            "served by vLLM, always opens with `role: assistant` and empty content, as captured).",
            'the first delta carries `"role": "assistant"` as OpenAI sends it.',
            "fixtures/real/gateway-compat-stream-llama31-8b.json; "
            "fixtures/real/v1-chat-stream-gpt-oss-20b-toolcall.json.",
        ),
        Quirk(
            "stream-usage-on-finish-chunk",
            "with `stream_options.include_usage`, `/ai/v1/chat/completions` streams put the real usage "
            "on the `finish_reason` chunk, then send a second usage chunk: all zeros for the Llama "
            "family, the real figures again (with `prompt_tokens_details`) for gpt-oss.",
            "one trailing chunk with `choices: []` and the real usage, as OpenAI sends it.",
            "fixtures/real/gateway-compat-stream-llama31-8b.json; "
            "fixtures/real/v1-chat-stream-gpt-oss-20b-toolcall.json.",
        ),
        Quirk(
            "embeddings-ignore-base64",
            '`/ai/v1/embeddings` ignores `encoding_format: "base64"` and answers float arrays (the '
            "OpenAI Node SDK then decodes them to all-zero vectors).",
            '`encoding_format: "base64"` answers base64 of little-endian float32, as OpenAI does.',
            "https://github.com/karakeep-app/karakeep/issues/2698 "
            "(fixtures/observations/v1-embeddings-base64-ignored-observation-2026-08.json).",
        ),
        Quirk(
            "stream-padding",
            "native `/ai/run` SSE token events carry a random-length `p` padding field.",
            'token events are `{"response": ...}` only.',
            "https://www.answeroverflow.com/m/1345277827016294410 "
            "(fixtures/real/run-stream-sse-p-padding.json).",
        ),
        Quirk(
            "validation-error-prefix",
            "5006 messages read `AiError: Bad input: Error: ...` except additional-property errors, "
            "which have no inner `Error: ` (as captured for flux-1-schnell).",
            "every 5006 message uses `AiError: Bad input: Error: ...`.",
            "fixtures/real/err-5006-flux-width-height.json vs "
            "fixtures/real/err-5006-schema-v1-content-array.json.",
        ),
        Quirk(
            "flux-short-error-body",
            "flux-1-schnell's model-layer errors are `{errors, success}` only, "
            "without `result` and `messages`.",
            "they carry `result: {}` and `messages: []` like every other model-layer error.",
            "fixtures/real/err-5006-flux-width-height.json (a real flux-1-schnell 5006 body).",
        ),
        Quirk(
            "daily-limit-crossing-call-allowed",
            "on the free plan the call that crosses 10,000 neurons still succeeds; the next one gets 4006.",
            "a call whose estimated cost would cross the allowance is refused up front.",
            "https://developers.cloudflare.com/workers-ai/platform/pricing/ (a hard stop once the day's "
            "allocation is used up); fixtures/observations/err-4006-daily-neurons-binding-and-misc.json.",
        ),
        Quirk(
            "whisper-vtt-short-timestamps",
            "whisper's `vtt` writes cue times as bare seconds under a minute (`00.280 --> 01.840`), "
            "`MM:SS.mmm` past a minute and `HH:MM:SS.mmm` past an hour (the last two inferred).",
            "cue times are always `HH:MM:SS.mmm`, as the WebVTT specification requires.",
            "a real whisper answer compared field by field in this project's issue 20 (cues `00.280 --> "
            "01.840` for the first five words of fixtures/real/run-whisper-rest-envelope.json's clip); no "
            "public capture of a `vtt` past one minute was found.",
        ),
        Quirk(
            "billing-as-measured",
            "models whose live calls were billed differently from the pricing page's arithmetic are "
            "billed as measured (flux-1-schnell: tiles*4.80 + tiles*steps*9.60, 172.80 at 1024x1024 "
            "with 4 steps; docs/costs.md lists every case).",
            "every model is billed by the pricing page's rule (flux-1-schnell 1024x1024, 4 steps: 57.60).",
            "fixtures/observations/headers-and-billing-observed.json (a measured 172.80 where the page gives "
            "57.60).",
        ),
        Quirk(
            "no-neurons-header",
            "answers of models seen without a `cf-ai-neurons` header (Leonardo phoenix-1.0) carry none; "
            "the call is still charged to the ledger.",
            "every successful answer carries `cf-ai-neurons`.",
            "fixtures/observations/headers-and-billing-observed.json "
            "(phoenix-1.0: \"NO cf-ai-neurons header\").",
        ),
        Quirk(
            "daily-limit-concurrent-calls-cross",
            "on the free plan every call admitted while the day was under 10,000 neurons completes, "
            "however many were in flight: concurrent calls can take the day past the allowance by the "
            "cost of all of them together (300 calls at once on a 200-neuron allowance: ~177%).",
            "only one call may cross the allowance: a call whose charge finds the wall already reached "
            "by calls that finished while it ran is refused with 4006 and not charged (within one "
            "process; `--workers` processes each see the others' charges at their next commit).",
            "https://developers.cloudflare.com/workers-ai/platform/pricing/ and "
            "fixtures/observations/headers-and-billing-observed.json: a call's "
            "cost is only known once it finished (`cf-ai-neurons`, e.g. 1363.64 for one flux-2-klein-9b "
            "call), so admission can only see finished calls; "
            "fixtures/observations/err-4006-daily-neurons-binding-and-misc.json: "
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
