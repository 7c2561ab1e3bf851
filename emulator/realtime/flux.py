"""`@cf/deepgram/flux`: conversational speech recognition over a WebSocket.

Documented (catalog `flux.json`, https://developers.cloudflare.com/workers-ai/models/flux/): query
`encoding=linear16` and `sample_rate` (both required), `eot_threshold` (0.5–0.9, default 0.7),
`eager_eot_threshold` (0.3–0.9; enables `EagerEndOfTurn`/`TurnResumed`), `eot_timeout_ms` (default
5000); binary audio in; messages with `request_id`, `sequence_id`, `event` (`Update`, `StartOfTurn`,
`EagerEndOfTurn`, `TurnResumed`, `EndOfTurn`), `turn_index`, `audio_window_start/end`, `transcript`,
`words[{word, confidence}]`, `end_of_turn_confidence`. From Deepgram's own Flux API, which Cloudflare
serves (inferred, not in Cloudflare's docs): a first `{"type": "Connected"}` message, `"type":
"TurnInfo"` on the turn messages, an `Update` about every 0.25 s of audio, the state machine of
https://developers.deepgram.com/docs/flux/state, and `{"type": "CloseStream"}` to finish.

The fake listens for real: a 20 ms frame louder than about -36 dBFS is speech. A turn starts on speech,
gains 2.5 words per second of speech (seeded prose, fixed by the turn's index and start), ends after a
silence that grows with `eot_threshold` (0.4 s at 0.5 … 1.2 s at 0.9) or after `eot_timeout_ms`.
"""

from __future__ import annotations

import math
from typing import Any

from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.fakes import text as text_fake
from emulator.fakes.seed import derive_seed
from emulator.gil import GilTurns
from emulator.realtime.base import (
    Message,
    PcmFrames,
    Session,
    control_message,
    dumps,
    query_float,
    query_int,
)
from emulator.realtime.codecs import chosen_encoding

WORDS_PER_SECOND = 2.5
UPDATE_EVERY = 0.25
EAGER_FRACTION = 0.5  # an eager end of turn comes after this share of the end-of-turn silence


class FluxSession(Session):
    def __init__(self, request_id: str, seed: int, query: dict[str, str], model: Model) -> None:
        super().__init__(request_id, seed)
        if "sample_rate" not in query:
            raise CFError(ErrorKind.BAD_INPUT, detail="Error: required properties at '/' are 'sample_rate'")
        if "encoding" not in query:
            raise CFError(ErrorKind.BAD_INPUT, detail="Error: required properties at '/' are 'encoding'")
        chosen_encoding(query, model, ("linear16",))
        self.frames = PcmFrames(query_int(query, "sample_rate", 16000, low=8000))
        self.eot_threshold = query_float(query, "eot_threshold", 0.7, 0.5, 0.9)
        eager = query.get("eager_eot_threshold")
        self.eager_threshold = None if eager is None else query_float(query, "eager_eot_threshold", 0.5,
                                                                       0.3, 0.9)
        self.eot_timeout = query_int(query, "eot_timeout_ms", 5000, low=0, high=600_000) / 1000
        self.end_silence = 0.4 + (self.eot_threshold - 0.5) * 2.0
        self.sequence = 0
        self.turn_index = 0
        self.in_turn = False
        self.eager_sent = False
        self.turn_start = 0.0
        self.speech = 0.0  # seconds of speech in the current turn
        self.silence = 0.0  # seconds since the last speech frame
        self.last_update = 0.0
        self._words: list[dict[str, Any]] = []

    def _message(self, body: dict[str, Any]) -> str:
        body = {"request_id": self.request_id, "sequence_id": self.sequence, **body}
        self.sequence += 1
        return dumps(body)

    def opening(self) -> list[Message]:
        return [self._message({"type": "Connected"})]

    def _turn_words(self) -> list[dict[str, Any]]:
        count = math.floor(self.speech * WORDS_PER_SECOND) if self.speech >= 0.2 else 0
        if len(self._words) < count:
            seed = derive_seed(self.seed, "flux", self.turn_index, round(self.turn_start * 1000))
            prose, _ = text_fake.prose(seed, 4 * count + 8)
            tokens = [w for w in prose.split() if w] or ["hello"]
            while len(tokens) < count:
                tokens += tokens
            self._words = [{"word": w, "confidence": round(0.8 + (derive_seed(seed, i) % 2000) / 10000, 4)}
                           for i, w in enumerate(tokens[:count])]
        return self._words[:count]

    def _turn_info(self, event: str, now: float) -> str:
        words = self._turn_words() if self.in_turn else []
        confidence = 0.0
        if self.in_turn:
            confidence = min(1.0, self.silence / self.end_silence) * self.eot_threshold
            if event == "EndOfTurn":
                confidence = max(confidence, self.eot_threshold)
        return self._message({
            "type": "TurnInfo", "event": event, "turn_index": self.turn_index,
            "audio_window_start": round(self.turn_start if self.in_turn else self.last_update, 3),
            "audio_window_end": round(now, 3),
            "transcript": " ".join(w["word"] for w in words), "words": words,
            "end_of_turn_confidence": round(confidence, 4),
        })

    def on_binary(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        turns = GilTurns()  # a large message is stepped on a worker thread (server/realtime.py)
        for now, speech in self.frames.feed(data):
            turns.tick()
            step = self.frames.frame_samples / self.frames.sample_rate
            self.usage.audio_seconds = now
            event = self._step(now, speech, step)
            if event is not None:
                out.append(event)
                self.last_update = now
            elif now - self.last_update >= UPDATE_EVERY - 1e-9:
                out.append(self._turn_info("Update", now))
                self.last_update = now
        return out

    def _step(self, now: float, speech: bool, step: float) -> str | None:
        if not self.in_turn:
            if not speech:
                return None
            self.in_turn, self.turn_start, self.speech, self.silence = True, now - step, step, 0.0
            self._words = []
            return self._turn_info("StartOfTurn", now)
        if speech:
            self.speech += step
            self.silence = 0.0
            if self.eager_sent:
                self.eager_sent = False
                return self._turn_info("TurnResumed", now)
            return None
        self.silence += step
        has_words = bool(self._turn_words())
        if self.silence >= self.end_silence or (self.silence >= self.eot_timeout and has_words):
            return self._end_turn(now)
        if (self.eager_threshold is not None and not self.eager_sent and has_words
                and self.silence >= self.end_silence * EAGER_FRACTION * self.eager_threshold / 0.5):
            self.eager_sent = True
            return self._turn_info("EagerEndOfTurn", now)
        return None

    def _end_turn(self, now: float) -> str:
        message = self._turn_info("EndOfTurn", now)
        self.in_turn = self.eager_sent = False
        self.turn_index += 1
        self._words = []
        return message

    def on_text(self, text: str) -> tuple[list[Message], bool]:
        kind = control_message(text).get("type")
        return [], kind == "CloseStream"

    def closing(self) -> list[Message]:
        if self.in_turn and self._turn_words():
            return [self._end_turn(self.frames.seconds)]
        return []
