"""Convert the real captures shipped in fixtures/observations/ into replay cassettes in fixtures/real/.

Run from the repository root: ``.venv/bin/python -m contract.build_fixtures`` (its output is committed).
Each cassette holds the real response bytes of one capture and says, in ``source``, which file it came
from and what had to be supplied because the capture did not publish it (a request body, an envelope
around printed fields, a status the author did not print). Captures whose status or body is unknown,
elided or only paraphrased are not converted.
"""

from __future__ import annotations

import io
import json
import math
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.cassettes import Cassette, Interaction, RecordedRequest, RecordedResponse, dump_cassette
from emulator.cassettes.format import SSEEvent, split_sse
from emulator.settings import DEFAULT_ACCOUNT

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "real"
MEDIA = ROOT / "fixtures" / "media"
# Every capture, verbatim as published (fixtures/observations/INDEX.md names each one's public source).
# Those that cannot become a replayable interaction (no status, an elided body, a binding result, a
# quoted note) are only cited there; contract/test_recorded.py says, for each, why it is not replayed.
REAL = ROOT / "fixtures" / "observations"

# The account id and gateway id the suite uses in place of the captures' placeholders.
ACCOUNT = DEFAULT_ACCOUNT
GATEWAY = "contract-gw"
RECORDED_AT = "2026-01-01T00:00:00Z"  # fixed so re-running the script gives identical files


def tone_wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    """A deterministic 16-bit mono 440 Hz WAV: the stand-in for audio the captures did not publish."""
    frames = int(seconds * rate)
    pcm = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames)
    )
    head = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return head + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm


def small_jpeg() -> bytes:
    """A deterministic 32x32 JPEG: the stand-in for the notebook's photo, which was not published."""
    from PIL import Image

    img = Image.new("RGB", (32, 32))
    img.putdata([(x * 8, y * 8, 128) for y in range(32) for x in range(32)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def run_path(model: str) -> str:
    return f"/client/v4/accounts/{ACCOUNT}/ai/run/{model}"


def v1_path(endpoint: str) -> str:
    return f"/client/v4/accounts/{ACCOUNT}/ai/v1/{endpoint}"


def gateway_path(tail: str) -> str:
    return f"/v1/{ACCOUNT}/{GATEWAY}/{tail}"


def compact(value: Any) -> bytes:
    """JSON the way Cloudflare sends it: no spaces, key order kept, non-ASCII left as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class Built:
    name: str
    source: str
    interactions: list[Interaction] = field(default_factory=list)

    def add(
        self,
        method: str,
        path: str,
        body: bytes,
        content_type: str,
        status: int,
        response_type: str,
        response: bytes,
        *,
        events: list[SSEEvent] | None = None,
    ) -> None:
        request = RecordedRequest.build(method, path, None, {"content-type": content_type}, body)
        recorded = RecordedResponse.build(status, {"content-type": response_type}, response, events=events)
        self.interactions.append(Interaction(request=request, response=recorded, recorded_at=RECORDED_AT))


def load(name: str) -> Any:
    return json.loads((REAL / name).read_text("utf-8"))


def from_cassette(file: str, path: str, note: str) -> Built:
    """The opencode golden recordings: request and SSE body are both verbatim."""
    data = load(file)
    inter = data["interactions"][0]
    built = Built(
        file.removesuffix(".cassette.json"),
        f"converted from fixtures/observations/{file}"
        f" ({data['metadata']['name']}, recorded {data['metadata']['recordedAt']}); {note}",
    )
    req, resp = inter["request"], inter["response"]
    built.add(
        "POST",
        path,
        req["body"].encode(),
        "application/json",
        resp["status"],
        resp["headers"]["content-type"],
        resp["body"].encode(),
    )
    return built


def build_all() -> list[Built]:
    out: list[Built] = []
    out.append(
        from_cassette(
            "v1-chat-stream-gpt-oss-20b-toolcall.cassette.json",
            v1_path("chat/completions"),
            "verbatim request and SSE body; {account} mapped to the suite's account id",
        )
    )
    out.append(
        from_cassette(
            "gateway-compat-stream-llama31-8b.cassette.json",
            gateway_path("compat/chat/completions"),
            f"verbatim; {{account}}/{{gateway}} mapped to the suite's account and '{GATEWAY}'",
        )
    )
    out.append(
        from_cassette(
            "gateway-compat-stream-gpt-oss-20b-toolcall.cassette.json",
            gateway_path("compat/chat/completions"),
            f"verbatim; {{account}}/{{gateway}} mapped to the suite's account and '{GATEWAY}'",
        )
    )

    kimi = load("gateway-compat-chat-kimi-k26-nonstream.json")
    built = Built(
        "gateway-compat-chat-kimi-k26-nonstream",
        "converted from fixtures/observations/gateway-compat-chat-kimi-k26-nonstream.json "
        "(blog post; request and body verbatim, the author elided text with '.....')",
    )
    built.add(
        "POST",
        gateway_path("compat/chat/completions"),
        compact(kimi["request"]),
        "application/json",
        kimi["status"],
        "application/json",
        kimi["body_raw"].encode(),
    )
    out.append(built)

    higress = load("v1-chat-nonstream-llama3-8b-higress-2024-07.json")
    built = Built(
        "v1-chat-nonstream-llama3-8b-higress",
        "converted from fixtures/observations/v1-chat-nonstream-llama3-8b-higress-2024-07.json "
        "(README example, pretty-printed there; re-compacted with key order kept; request model set to "
        "the @cf id the proxy mapped to)",
    )
    request = {
        "model": "@cf/meta/llama-3-8b-instruct",
        "messages": higress["request"]["messages"],
        "max_tokens": higress["request"]["max_tokens"],
    }
    built.add(
        "POST",
        v1_path("chat/completions"),
        compact(request),
        "application/json",
        200,
        "application/json",
        compact(higress["body"]),
    )
    out.append(built)

    padding = load("run-stream-sse-p-padding-discord-2025-03.json")
    built = Built(
        "run-stream-sse-p-padding",
        "converted from fixtures/observations/run-stream-sse-p-padding-discord-2025-03.json "
        "(events re-typed from a Discord archive; request body not published: a stand-in prompt; "
        "'data: [DONE]' appended as in run-stream-sse-secton-proxy-2025-06.sse)",
    )
    sse = "".join(f"data: {compact(e).decode()}\n\n" for e in padding["streamed_data"]) + "data: [DONE]\n\n"
    built.add(
        "POST",
        run_path("@cf/meta/llama-2-7b-chat-int8"),
        compact({"prompt": "What is your name?", "stream": True}),
        "application/json",
        200,
        "text/event-stream",
        sse.encode(),
        events=split_sse(sse.encode()),
    )
    out.append(built)

    secton = (REAL / "run-stream-sse-secton-proxy-2025-06.sse").read_bytes()
    if not secton.endswith(b"\n\n"):
        secton = secton.rstrip(b"\n") + b"\n\n"
    built = Built(
        "run-stream-sse-secton-proxy",
        "converted from fixtures/observations/run-stream-sse-secton-proxy-2025-06.sse "
        "(UNCERTAIN: relayed by a third-party proxy; model and request not published: stand-ins)",
    )
    built.add(
        "POST",
        run_path("@cf/meta/llama-3.1-8b-instruct"),
        compact({"messages": [{"role": "user", "content": "Hello!"}], "stream": True}),
        "application/json",
        200,
        "text/event-stream",
        secton,
        events=split_sse(secton),
    )
    out.append(built)

    whisper = load("run-whisper-rest-envelope-2024-03.json")
    built = Built(
        "run-whisper-rest-envelope",
        "converted from fixtures/observations/run-whisper-rest-envelope-2024-03.json "
        "(response envelope verbatim, re-compacted; the mp3 request body was not published: "
        "fixtures/media/tone.wav stands in)",
    )
    built.add(
        "POST",
        run_path("@cf/openai/whisper"),
        tone_wav(),
        "application/octet-stream",
        200,
        "application/json",
        compact(whisper["response_body"]),
    )
    out.append(built)

    resnet = load("run-resnet50-rest-envelope-2024-01.json")
    built = Built(
        "run-resnet50-rest-envelope",
        "converted from fixtures/observations/run-resnet50-rest-envelope-2024-01.json "
        "(response envelope verbatim; the jpeg request body was not published: "
        "fixtures/media/small.jpg stands in)",
    )
    built.add(
        "POST",
        run_path("@cf/microsoft/resnet-50"),
        small_jpeg(),
        "image/jpeg",
        200,
        "application/json",
        compact(resnet["response_body"]),
    )
    out.append(built)

    notebook = load("run-classify-translate-summarize-notebook.json")
    built = Built(
        "run-classify-translate-notebook",
        "converted from fixtures/observations/run-classify-translate-summarize-notebook.json "
        "(request and result verbatim; only the result was printed, so the documented success "
        "envelope {result,success,errors,messages} is put around it)",
    )
    for sample in notebook["samples"]:
        if sample["model"] not in ("@cf/huggingface/distilbert-sst-2-int8", "@cf/meta/m2m100-1.2b"):
            continue
        result = sample["value"]
        if sample["model"] == "@cf/meta/m2m100-1.2b":
            result = {"translated_text": result}
        envelope = {"result": result, "success": True, "errors": [], "messages": []}
        built.add(
            "POST",
            run_path(sample["model"]),
            compact(sample["request_json"]),
            "application/json",
            200,
            "application/json",
            compact(envelope),
        )
    out.append(built)

    auth = load("err-10000-auth.json")["samples"][0]
    built = Built(
        "err-10000-auth",
        "converted from fixtures/observations/err-10000-auth.json (status and body verbatim; "
        "request body not published: a stand-in prompt)",
    )
    built.add(
        "POST",
        run_path("@cf/meta/llama-3.1-8b-instruct"),
        compact({"prompt": "contract: bad token"}),
        "application/json",
        auth["status"],
        "application/json",
        auth["body_raw"].encode(),
    )
    out.append(built)

    route = load("err-7003-could-not-route-v1.json")
    bad = "not-an-account-id"
    built = Built(
        "err-7003-could-not-route-v1",
        "converted from fixtures/observations/err-7003-could-not-route-v1.json (body verbatim "
        f"except the redacted path segment, replaced by '{bad}' as in the request; status 404)",
    )
    body = route["body_raw"].replace("<ACCOUNT_ID_SLOT_CONTAINED_TOKEN>", bad)
    request = {"model": "@cf/meta/llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}
    built.add(
        "POST",
        f"/client/v4/accounts/{bad}/ai/v1/chat/completions",
        compact(request),
        "application/json",
        404,
        "application/json",
        body.encode(),
    )
    out.append(built)

    content = load("err-5006-schema-v1-content-array.json")
    built = Built(
        "err-5006-schema-v1-content-array",
        "converted from fixtures/observations/err-5006-schema-v1-content-array.json (status and "
        "body verbatim; model and request not published: a llama-3-8b request with an array content, "
        "which the message describes)",
    )
    request = {
        "model": "@cf/meta/llama-3-8b-instruct",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    built.add(
        "POST",
        v1_path("chat/completions"),
        compact(request),
        "application/json",
        content["status"],
        "application/json",
        content["body_raw"].encode(),
    )
    out.append(built)

    flux = load("err-5006-flux-width-height.json")
    built = Built(
        "err-5006-flux-width-height",
        "converted from fixtures/observations/err-5006-flux-width-height.json (body verbatim; "
        "request values not published: stand-ins with the same fields; status not printed: 400 as for "
        "every other 5006 capture)",
    )
    request = {"prompt": "a lighthouse at dusk", "steps": 4, "width": 512, "height": 512}
    built.add(
        "POST",
        run_path("@cf/black-forest-labs/flux-1-schnell"),
        compact(request),
        "application/json",
        400,
        "application/json",
        flux["body_raw"].encode(),
    )
    out.append(built)

    gw = load("err-aigateway-2005-2008-compat.json")["samples"][1]
    built = Built(
        "err-aigateway-2008-invalid-provider",
        "converted from fixtures/observations/err-aigateway-2005-2008-compat.json (2008 body and "
        "status verbatim; request not published: a model id without the 'workers-ai/' prefix, as the "
        "issue describes)",
    )
    request = {"model": "@cf/meta/llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}
    built.add(
        "POST",
        gateway_path("compat/chat/completions"),
        compact(request),
        "application/json",
        gw["status"],
        "application/json",
        gw["body_raw"].encode(),
    )
    out.append(built)
    return out


def main() -> int:
    if not REAL.is_dir():
        print(f"build_fixtures: {REAL} not found", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    MEDIA.mkdir(parents=True, exist_ok=True)
    (MEDIA / "tone.wav").write_bytes(tone_wav())
    (MEDIA / "small.jpg").write_bytes(small_jpeg())
    for built in build_all():
        cassette = Cassette(
            name=f"real/{built.name}",
            created_at=RECORDED_AT,
            source=built.source,
            interactions=built.interactions,
        )
        (OUT / f"{built.name}.json").write_bytes(dump_cassette(cassette))
        print(f"fixtures/real/{built.name}.json: {len(built.interactions)} interaction(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
