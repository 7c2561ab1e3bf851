"""Text-to-Speech: real decodable MP3 whose length follows the text (~15 characters a second).

aura-1/aura-2 answer raw `audio/mpeg`; melotts answers JSON `{audio: <base64 MP3>}`. Evidence for
melotts: a public REST client that sends no Accept header (so Node's fetch sends `*/*`) decodes
`result.audio` from the v4 envelope and tests that as "the real API format"; Workers binding code
reads `.audio` too. Its output schema also lists raw `audio/mpeg`: the emulator serves that when the
Accept header asks for `audio/mpeg` and not JSON (inferred: no recording of that case exists).
Usage counts characters (aura is billed per 1k characters).
"""

from __future__ import annotations

import base64

from emulator.call import Call, Outcome, Usage
from emulator.errors import CFError, ErrorKind
from emulator.fakes import audio
from emulator.tasks import FakeContext, register

CHARS_PER_SECOND = 15.0
MIN_SECONDS = 0.3


def spoken_text(call: Call) -> str:
    inputs = call.json_inputs
    value = inputs.get("text", inputs.get("prompt"))
    if not isinstance(value, str) or not value.strip():
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: required properties at '/' are 'text'")
    return value


def seconds_for(text: str) -> float:
    return max(MIN_SECONDS, round(len(text) / CHARS_PER_SECOND, 3))


def wants_binary(call: Call) -> bool:
    accept = call.headers.get("Accept", call.headers.get("accept", ""))
    return "audio/mpeg" in accept and "json" not in accept


@register("Text-to-Speech")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    text = spoken_text(call)
    body = audio.mp3(seconds_for(text), ctx.seed)
    usage = Usage(characters=len(text), audio_seconds=seconds_for(text))
    if "application/json" in call.model.output_content_types() and not wants_binary(call):
        return Outcome(result={"audio": base64.b64encode(body).decode()}, usage=usage)
    return Outcome(body=body, content_type="audio/mpeg", usage=usage)
