"""`@cf/deepgram/aura-1`, `aura-2-en`, `aura-2-es`: text-to-speech streamed over a WebSocket.

The messages are those of Cloudflare's changelog example (2025-08-27: `{"type": "Speak", "text": …}`
then `{"type": "Flush"}`, audio received back), which is Deepgram's streaming TTS protocol; the rest
of it is inferred from Deepgram's API: a first `Metadata` message, binary audio in half-second
messages (query `encoding`: linear16, default 24000 Hz; mulaw or alaw, default 8000 Hz; mp3, default
22050 Hz at `bit_rate` 48000; `sample_rate` sets the rate; `container` none), then `{"type": "Flushed",
"sequence_id": n}`; `Clear` drops text not yet flushed (`Cleared`); `Close` ends the session. The
`speaker` query parameter picks the voice (default: the catalog's). Billed per character spoken.
"""

from __future__ import annotations

import uuid

from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.fakes import audio
from emulator.fakes.seed import derive_seed
from emulator.realtime.base import Message, Session, control_message, dumps, query_int
from emulator.realtime.codecs import (
    alaw_encode,
    chosen_encoding,
    declared_choice,
    mp3_encode,
    mulaw_encode,
)

WRITABLE = ("linear16", "mulaw", "alaw", "mp3")  # of the catalog's encodings, those the fake writes
DEFAULT_SAMPLE_RATE = {"linear16": 24000, "mulaw": 8000, "alaw": 8000, "mp3": 22050}
CHARS_PER_SECOND = 15.0
CHUNK_SECONDS = 0.5
MAX_TEXT = 2000  # characters buffered before a Flush (Deepgram's documented limit per Speak message)


class AuraSession(Session):
    def __init__(self, request_id: str, seed: int, query: dict[str, str], model: Model) -> None:
        super().__init__(request_id, seed)
        self.encoding = chosen_encoding(query, model, WRITABLE)
        container = declared_choice(query, model, "container", "none")
        if container != "none":
            raise CFError(ErrorKind.BAD_INPUT, detail="Error: the emulator's WebSocket speech is raw "
                          f"{self.encoding} (container none), not container {container!r}")
        self.sample_rate = query_int(query, "sample_rate", DEFAULT_SAMPLE_RATE[self.encoding], low=8000,
                                     high=48000)
        self.kbps = query_int(query, "bit_rate", 48000, low=8000, high=320000) // 1000
        speaker = model.input_schema.get("properties", {}).get("speaker", {})
        self.speaker = query.get("speaker", speaker.get("default", "luna"))
        if speaker.get("enum") and self.speaker not in speaker["enum"]:
            raise CFError(ErrorKind.BAD_INPUT,
                          detail=f"Error: speaker {self.speaker!r} is not one of {model.name}'s voices")
        self.model_name = f"{model.name.rsplit('/', 1)[-1]}-{self.speaker}"
        self.buffer = ""
        self.flushes = 0

    def opening(self) -> list[Message]:
        return [dumps({"type": "Metadata", "request_id": self.request_id, "model_name": self.model_name,
                       "model_version": "2025-01-01.0",
                       "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, self.model_name))})]

    def on_binary(self, data: bytes) -> list[Message]:
        return [self._warning("binary messages are not accepted; send Speak, Flush, Clear or Close")]

    @staticmethod
    def _warning(text: str) -> str:
        return dumps({"type": "Warning", "warn_code": "UNPARSABLE_CLIENT_MESSAGE", "warn_msg": text})

    def on_text(self, text: str) -> tuple[list[Message], bool]:
        message = control_message(text)
        kind = message.get("type")
        if kind == "Speak":
            spoken = message.get("text")
            if not isinstance(spoken, str):
                return [self._warning("Speak needs a string `text`")], False
            if len(self.buffer) + len(spoken) > MAX_TEXT:
                return [self._warning(f"more than {MAX_TEXT} characters before a Flush")], False
            self.buffer += spoken
            return [], False
        if kind == "Flush":
            return self._flush(), False
        if kind == "Clear":
            self.buffer = ""
            return [dumps({"type": "Cleared", "sequence_id": self.flushes})], False
        if kind == "Close":
            return [], True
        return [self._warning(f"unknown message type {kind!r}")], False

    def _flush(self) -> list[Message]:
        out: list[Message] = []
        text, self.buffer = self.buffer, ""
        if text.strip():
            seconds = max(0.3, round(len(text) / CHARS_PER_SECOND, 3))
            pcm = audio.pcm(seconds, derive_seed(self.seed, "aura", self.speaker, text), self.sample_rate)
            data, step = self._encoded(pcm)
            out += [data[i:i + step] for i in range(0, len(data), step)]
            self.usage.characters += len(text)
            self.usage.audio_seconds += seconds
        out.append(dumps({"type": "Flushed", "sequence_id": self.flushes}))
        self.flushes += 1
        return out

    def _encoded(self, pcm: bytes) -> tuple[bytes, int]:
        """The speech in the session's encoding, and the bytes of one CHUNK_SECONDS message of it."""
        if self.encoding == "mp3":
            return mp3_encode(pcm, self.sample_rate, self.kbps), round(self.kbps * 125 * CHUNK_SECONDS)
        if self.encoding == "linear16":
            return pcm, round(CHUNK_SECONDS * self.sample_rate) * 2
        encode = mulaw_encode if self.encoding == "mulaw" else alaw_encode
        return encode(pcm), round(CHUNK_SECONDS * self.sample_rate)

    def closing(self) -> list[Message]:
        return self._flush() if self.buffer.strip() else []
