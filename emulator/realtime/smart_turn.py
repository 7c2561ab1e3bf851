"""`@cf/pipecat-ai/smart-turn-v2` over a WebSocket: end-of-turn detection per audio chunk.

Cloudflare marks the model realtime but documents no WebSocket messages; the emulator takes the HTTP
input shape one message at a time (inferred): a binary message is raw audio (`dtype` query parameter:
`uint8` bytes of int16 PCM by default, or `float32`/`float64` samples, 16 kHz), a text message is the
JSON input `{audio: <base64>, dtype}`; each is answered with the model's output `{is_complete,
probability}`. The probability rises with the silence at the end of the chunk. Billed per audio minute.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from emulator.errors import CFError, ErrorKind
from emulator.realtime.base import Message, Session, control_message, dumps

SAMPLE_RATE = 16000
DTYPES = {"uint8": ("<i2", 32768.0), "float32": ("<f4", 1.0), "float64": ("<f8", 1.0)}
TAIL_SECONDS = 0.3
SILENT_RMS = 500.0 / 32768.0


class SmartTurnSession(Session):
    def __init__(self, request_id: str, seed: int, query: dict[str, str]) -> None:
        super().__init__(request_id, seed)
        self.dtype = query.get("dtype", "uint8")
        if self.dtype not in DTYPES:
            raise CFError(ErrorKind.BAD_INPUT, detail="Error: dtype must be one of uint8, float32, float64")

    def on_binary(self, data: bytes) -> list[Message]:
        return [self._predict(data, self.dtype)]

    def on_text(self, text: str) -> tuple[list[Message], bool]:
        message = control_message(text)
        if message.get("type") == "Close":
            return [], True
        dtype = message.get("dtype", self.dtype)
        raw = message.get("audio")
        if not isinstance(raw, str) or dtype not in DTYPES:
            return [dumps({"error": "send binary audio, or {\"audio\": <base64>, \"dtype\": …}"})], False
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return [dumps({"error": "audio is not valid base64"})], False
        return [self._predict(data, dtype)], False

    def _predict(self, data: bytes, dtype: str) -> str:
        kind, scale = DTYPES[dtype]
        width = np.dtype(kind).itemsize
        samples = np.frombuffer(data[: len(data) - len(data) % width], dtype=kind).astype(np.float64) / scale
        samples = samples[np.isfinite(samples)]
        self.usage.audio_seconds += len(samples) / SAMPLE_RATE
        tail = samples[-round(TAIL_SECONDS * SAMPLE_RATE):]
        if len(tail) == 0:
            return dumps({"is_complete": False, "probability": 0.0})
        rms = float(np.sqrt(np.mean(tail * tail)))
        probability = round(float(np.clip(1.0 - rms / (4 * SILENT_RMS), 0.0, 1.0)) * 0.98 + 0.01, 4)
        return dumps({"is_complete": probability >= 0.5, "probability": probability})
