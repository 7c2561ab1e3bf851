"""What every realtime session shares: the message type, PCM framing with an energy voice detector,
and the session interface the WebSocket handler drives."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from emulator.call import Usage
from emulator.errors import CFError, ErrorKind
from emulator.limits import is_number_text

# A server message: JSON text or a binary frame.
Message = str | bytes
FRAME_SECONDS = 0.02  # analysis frame: 20 ms, whatever sizes the client's chunks have
SPEECH_RMS = 500.0  # int16 RMS above which a frame counts as speech (about -36 dBFS)
MAX_SAMPLE_RATE = 192_000


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def query_int(query: dict[str, str], key: str, default: int, *, low: int = 1, high: int = MAX_SAMPLE_RATE
              ) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    if not is_number_text(raw) or not low <= int(raw) <= high:
        raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: {key} must be an integer between {low} and {high}")
    return int(raw)


def query_float(query: dict[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: {key} must be a number between {low} and {high}")
    return value


@dataclass
class PcmFrames:
    """Cuts an int16 mono byte stream into fixed 20 ms frames, keeping the remainder for the next chunk,
    so what a session computes depends on the audio only, not on how the client split it."""

    sample_rate: int
    _pending: bytearray = field(default_factory=bytearray)
    samples: int = 0  # samples consumed into whole frames

    @property
    def frame_samples(self) -> int:
        return max(1, round(self.sample_rate * FRAME_SECONDS))

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def feed(self, data: bytes) -> list[tuple[float, bool]]:
        """(end time in seconds, is speech) of each whole frame the new bytes complete. The frames'
        levels are worked out together, one row of an array each (frame by frame, a 3 MB message's
        4,700 frames took ~60 ms)."""
        self._pending += data
        size = self.frame_samples * 2
        whole = len(self._pending) // size
        if not whole:
            return []
        frames = np.frombuffer(bytes(self._pending[:whole * size]), dtype="<i2").astype(np.float64)
        del self._pending[:whole * size]
        frames = frames.reshape(whole, self.frame_samples)
        speech = (np.sqrt(np.mean(frames * frames, axis=1)) > SPEECH_RMS).tolist()
        step, out = self.frame_samples, []
        for is_speech in speech:
            self.samples += step
            out.append((self.samples / self.sample_rate, is_speech))  # `seconds`
        return out


class Session(abc.ABC):
    """One WebSocket session; the handler sends what each method returns, in order."""

    def __init__(self, request_id: str, seed: int) -> None:
        self.request_id = request_id
        self.seed = seed
        self.usage = Usage(requests=1)
        self.received = 0  # client messages
        self.sent = 0  # server messages (counted by the handler)

    def opening(self) -> list[Message]:
        return []

    @abc.abstractmethod
    def on_binary(self, data: bytes) -> list[Message]: ...

    def on_text(self, text: str) -> tuple[list[Message], bool]:
        """Messages to send, and whether the client asked to end the session."""
        return [], False

    def closing(self) -> list[Message]:
        return []

    def summary(self) -> dict[str, Any]:
        """What the request log shows of the session."""
        return {"messages_in": self.received, "messages_out": self.sent,
                "audio_seconds": round(self.usage.audio_seconds, 3), "characters": self.usage.characters}


def control_message(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
