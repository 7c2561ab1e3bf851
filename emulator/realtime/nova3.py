"""`@cf/deepgram/nova-3` streaming transcription over a WebSocket (Deepgram's live `/v1/listen` protocol).

Cloudflare documents the model as realtime and its WebSocket price (pricing page, 836.36 neurons per
audio minute) but not the messages; they follow Deepgram's live API, which Cloudflare serves
(inferred): binary audio in (query `encoding`: linear16, or mulaw, decoded by realtime/codecs.py;
`sample_rate`, default 16000), a `Results`
message per second of audio with `channel.alternatives[0].{transcript, confidence, words}`,
`is_final`, `speech_final`, `start`, `duration`; `{"type": "KeepAlive"}` is accepted, `{"type":
"Finalize"}` flushes the audio so far (`from_finalize: true`), and `{"type": "CloseStream"}` flushes,
sends a `Metadata` summary and ends the session.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from emulator.catalog import Model
from emulator.fakes import text as text_fake
from emulator.fakes.seed import derive_seed
from emulator.gil import GilTurns
from emulator.realtime.base import (
    Message,
    PcmFrames,
    Session,
    control_message,
    dumps,
    query_int,
)
from emulator.realtime.codecs import DECODERS, chosen_encoding

READABLE = ("linear16", "mulaw")  # of the catalog's encodings, those the fake decodes
WINDOW_SECONDS = 1.0
WORDS_PER_SECOND = 2.5
MODEL_INFO = {"name": "general-nova-3", "version": "2025-01-01.0", "arch": "nova-3"}
MODEL_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "workers-ai-emulator/nova-3"))


class Nova3Session(Session):
    def __init__(self, request_id: str, seed: int, query: dict[str, str], model: Model) -> None:
        super().__init__(request_id, seed)
        self.decode = DECODERS[chosen_encoding(query, model, READABLE)]
        self.frames = PcmFrames(query_int(query, "sample_rate", 16000, low=8000))
        self.window_start = 0.0
        self.window_speech = 0.0
        self.window_index = 0
        self.had_speech = False
        self.digest = hashlib.sha256()

    def on_binary(self, data: bytes) -> list[Message]:
        self.digest.update(data)
        data = self.decode(data)
        out: list[Message] = []
        step = self.frames.frame_samples / self.frames.sample_rate
        turns = GilTurns()  # a large message is stepped on a worker thread (server/realtime.py)
        for now, speech in self.frames.feed(data):
            turns.tick()
            self.usage.audio_seconds = now
            if speech:
                self.window_speech += step
            if now - self.window_start >= WINDOW_SECONDS - 1e-9:
                out.append(self._results(now, from_finalize=False, speech_final=not speech))
        return out

    def _results(self, now: float, *, from_finalize: bool, speech_final: bool) -> str:
        count = round(self.window_speech * WORDS_PER_SECOND)
        seed = derive_seed(self.seed, "nova-3", self.window_index)
        prose, _ = text_fake.prose(seed, 4 * count + 8)
        tokens = [w for w in prose.split() if w][:count]
        duration = now - self.window_start
        step = duration / count if count else 0.0
        words: list[dict[str, Any]] = []
        for i, token in enumerate(tokens):
            words.append({"word": token.strip(".,;:!?").lower(),
                          "start": round(self.window_start + i * step, 3),
                          "end": round(self.window_start + (i + 0.85) * step, 3),
                          "confidence": round(0.8 + (derive_seed(seed, i) % 2000) / 10000, 4),
                          "punctuated_word": token})
        confidence = round(sum(w["confidence"] for w in words) / len(words), 4) if words else 0.0
        body: dict[str, Any] = {
            "type": "Results", "channel_index": [0, 1], "duration": round(duration, 3),
            "start": round(self.window_start, 3), "is_final": True,
            "speech_final": bool(words) and speech_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": " ".join(tokens), "confidence": confidence,
                                          "words": words}]},
            "metadata": {"request_id": self.request_id, "model_info": MODEL_INFO, "model_uuid": MODEL_UUID},
        }
        self.window_start, self.window_speech = now, 0.0
        self.window_index += 1
        return dumps(body)

    def _flush(self, *, from_finalize: bool) -> list[Message]:
        now = self.frames.seconds
        if now - self.window_start <= 1e-9:
            return []
        return [self._results(now, from_finalize=from_finalize, speech_final=True)]

    def on_text(self, text: str) -> tuple[list[Message], bool]:
        kind = control_message(text).get("type")
        if kind == "Finalize":
            return self._flush(from_finalize=True), False
        return [], kind == "CloseStream"

    def closing(self) -> list[Message]:
        out = self._flush(from_finalize=False)
        out.append(dumps({
            "type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
            "sha256": self.digest.hexdigest(),
            "created": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "duration": round(self.frames.seconds, 3), "channels": 1, "models": [MODEL_UUID],
            "model_info": {MODEL_UUID: MODEL_INFO},
        }))
        return out
