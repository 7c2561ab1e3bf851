"""Automatic Speech Recognition: a transcript whose length follows the audio, with word timings and WebVTT."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from emulator.call import Call, Outcome, Usage
from emulator.errors import CFError, ErrorKind
from emulator.fakes import audio
from emulator.fakes import text as text_fake
from emulator.fakes.seed import derive_seed
from emulator.quirks import enabled
from emulator.tasks import FakeContext, register
from emulator.tasks._media import list_bytes

WORDS_PER_SECOND = 2.5  # conversational speech
# Deepgram's conversational ASR only speaks WebSocket (its catalog schema); POST run/ explains that.
WEBSOCKET_ONLY = frozenset({"@cf/deepgram/flux"})


def audio_bytes(call: Call) -> tuple[bytes, str | None]:
    """The audio of a call: a raw body, a `{audio: [u8…]}` array, or a base64 string (turbo/smart-turn)."""
    if call.binary is not None:
        return call.binary.data, call.binary.content_type
    value = call.json_inputs.get("audio")
    if isinstance(value, dict):  # smart-turn `{body, contentType}`
        value = value.get("body")
    if isinstance(value, list):
        # `bytes` takes exactly the integers between 0 and 255 (and booleans, which are integers), in
        # C: a check of 5 million numbers one by one held the GIL ~250 ms.
        try:
            return list_bytes(value), None
        except (TypeError, ValueError):
            raise CFError(
                ErrorKind.BAD_INPUT,
                detail="Error: audio must be an array of integers between 0 and 255") from None
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True), None
        except (binascii.Error, ValueError):
            raise CFError(ErrorKind.INVALID_BASE64, type="string") from None
    return b"", None


def duration_of(call: Call) -> float:
    data, content_type = audio_bytes(call)
    try:
        return audio.duration_seconds(data, content_type)
    except audio.NotAudio as exc:
        raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: {exc}") from None


def _f32(value: float) -> float:
    # Real whisper timings are float32 artefacts (0.2800000011920929); numpy float32 reproduces them.
    return float(np.float32(value))


# Speech starts a little after the clip does (the captured answer's first word starts at 0.28 s).
LEAD_SECONDS = 0.28
# Cloudflare's cues hold five words (the captured answer's first cue is its first five words).
WORDS_PER_CUE = 5


def words_for(duration: float, seed: int) -> list[dict[str, Any]]:
    """Words with contiguous timings, as Cloudflare's whisper answers them (each `end` is the next
    `start`): the speech from LEAD_SECONDS to the end of the clip, shared out by word length."""
    count = max(1, round(duration * WORDS_PER_SECOND)) if duration > 0.2 else 0
    if count == 0:
        return []
    text, _ = text_fake.prose(seed, count * 2)
    tokens = [w for w in text.split() if w][:count]
    while len(tokens) < count:
        tokens += tokens[: count - len(tokens)] or ["hello"]
    lead = min(LEAD_SECONDS, duration / 10)
    weights = [len(w) + 1 for w in tokens]
    scale = (duration - lead) / sum(weights)
    bounds = [lead]
    for weight in weights:
        bounds.append(bounds[-1] + weight * scale)
    # Centiseconds, as whisper's timings are, then the float32 artefacts of the real answers.
    marks = [_f32(round(b, 2)) for b in bounds]
    return [{"word": w, "start": marks[i], "end": marks[i + 1]} for i, w in enumerate(tokens)]


def cue_time(seconds: float, short: bool) -> str:
    """A cue timestamp. Cloudflare writes bare seconds under a minute (`00.280`); past a minute the
    minutes and past an hour the hours are put in front (`01:05.120`, `01:00:05.120`: inferred, no
    capture that long was found). Without the `whisper-vtt-short-timestamps` quirk: `00:00:00.280`."""
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    if not short:
        return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"
    if h:
        return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"
    if m:
        return f"{m:02d}:{s:02d}.{ms:03d}"
    return f"{s:02d}.{ms:03d}"


def vtt_for(words: list[dict[str, Any]], *, short: bool = True, per_cue: int = WORDS_PER_CUE) -> str:
    """`WEBVTT`, then one cue per `per_cue` words, blank-line separated, with no trailing newline."""
    blocks = ["WEBVTT"]
    for i in range(0, len(words), per_cue):
        cue = words[i : i + per_cue]
        times = f"{cue_time(cue[0]['start'], short)} --> {cue_time(cue[-1]['end'], short)}"
        blocks.append(times + "\n" + " ".join(w["word"] for w in cue))
    return "\n\n".join(blocks)


def deepgram_result(words: list[dict[str, Any]], duration: float, seed: int) -> dict[str, Any]:
    """nova-3's Deepgram shape: `results.channels[0].alternatives[0].{transcript, confidence, words}`."""
    confidences = [round(0.8 + 0.2 * ((derive_seed(seed, i) % 1000) / 1000), 4) for i in range(len(words))]
    dg_words = [{"word": w["word"].strip(".,;:!?").lower(), "start": w["start"], "end": w["end"],
                 "confidence": c} for w, c in zip(words, confidences, strict=True)]
    confidence = round(sum(confidences) / len(confidences), 4) if confidences else 0.0
    transcript = " ".join(w["word"] for w in words)
    alternative = {"transcript": transcript, "confidence": confidence, "words": dg_words}
    return {"results": {"channels": [{"alternatives": [alternative]}]}}


@register("Automatic Speech Recognition")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    if call.model.name in WEBSOCKET_ONLY:
        raise CFError(ErrorKind.WEBSOCKET_ONLY, model=call.model.name)
    duration = duration_of(call)
    words = words_for(duration, ctx.seed)
    text = " ".join(w["word"] for w in words)
    vtt = vtt_for(words, short=enabled(ctx.quirks, "whisper-vtt-short-timestamps"))
    usage = Usage(audio_seconds=duration)
    result: dict[str, Any]
    if "nova-3" in call.model.name:
        result = deepgram_result(words, duration, ctx.seed)
    elif "whisper-large-v3-turbo" in call.model.name:
        result = {
            "transcription_info": {
                "language": call.json_inputs.get("language", "en"),
                "language_probability": 0.99,
                "duration": duration,
                "duration_after_vad": duration,
            },
            "text": text,
            "word_count": len(words),
            "segments": [
                {
                    "start": words[0]["start"] if words else 0.0,
                    "end": duration,
                    "text": text,
                    "temperature": 0.0,
                    "avg_logprob": -0.25,
                    "compression_ratio": 1.4,
                    "no_speech_prob": 0.01,
                    "words": words,
                }
            ]
            if words
            else [],
            "vtt": vtt,
        }
    else:
        # Key order of Cloudflare's whisper answer: text, word_count, vtt, words.
        result = {"text": text, "word_count": len(words), "vtt": vtt, "words": words}
    return Outcome(result=result, usage=usage)
