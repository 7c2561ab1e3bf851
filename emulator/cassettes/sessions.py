"""Replaying recorded WebSocket sessions: which recording a live client is following, frame by frame.

A session's upgrade request is matched like any request (method, path with the model, query). Every
recording of it is a candidate; the client's messages then choose among them. Each message the client
sends must equal the next client frame of a candidate: text compared as canonical JSON (the
`--ignore-field` paths removed) when it parses, else as exact text; binary compared byte for byte, so
the client must cut its audio into the same messages as when it was recorded. The model's frames that
follow a client frame in the recording are sent once that client frame has arrived. A message no
candidate expects is a miss (`SessionMiss`), described like a request miss: the frame's number, what
the closest recording expected and what came instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import orjson

from emulator.cassettes.format import Frame, Interaction, RecordedSession
from emulator.cassettes.match import strip_volatile

Message = str | bytes
_PREVIEW = 60


class SessionMiss(LookupError):
    """A client message that no recorded session of this request expects at this point."""


def _describe(message: Message | None) -> str:
    if message is None:
        return "(the session's end)"
    if isinstance(message, bytes):
        digest = hashlib.blake2b(message, digest_size=4).hexdigest()
        return f"binary {len(message)} bytes #{digest}"
    text = message if len(message) <= _PREVIEW else message[: _PREVIEW - 1] + "…"
    return f"text {text!r}"


class SessionPlayer:
    """Plays one client through the recordings of its upgrade request (`candidates`, the preferred
    one first), narrowing them to those whose frames agree with what happened so far."""

    def __init__(self, cassette: str, candidates: list[Interaction], *,
                 normalise_text: Callable[[str], str], volatile: frozenset[str] = frozenset()) -> None:
        self.cassette = cassette
        self._candidates = [c for c in candidates if c.session is not None]
        self._normalise_text = normalise_text
        self.volatile = volatile
        self.position = 0  # frames of the current recording played so far
        self.received = 0  # client messages matched so far

    @property
    def current(self) -> Interaction:
        return self._candidates[0]

    @property
    def session(self) -> RecordedSession:
        session = self.current.session
        assert session is not None
        return session

    def _frame(self, candidate: Interaction) -> Frame | None:
        assert candidate.session is not None
        frames = candidate.session.frames
        return frames[self.position] if self.position < len(frames) else None

    def due(self) -> list[Frame]:
        """The model's frames to send now: those up to the current recording's next client frame.
        Recordings whose frames differ from them are dropped."""
        out: list[Frame] = []
        while (frame := self._frame(self.current)) is not None and frame.dir == "out":
            self._candidates = [c for c in self._candidates if self._frame(c) == frame]
            out.append(frame)
            self.position += 1
        return out

    @property
    def finished(self) -> bool:
        """Every frame of the current recording is played."""
        return self._frame(self.current) is None

    def _key(self, message: Message) -> tuple[str, bytes]:
        if isinstance(message, bytes):
            return "binary", message
        text = self._normalise_text(message)
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            return "text", text.encode()
        if self.volatile:
            parsed = strip_volatile(parsed, self.volatile)
        return "json", orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)

    def receive(self, message: Message) -> Frame:
        """The client's next message: keep the recordings that expect it here (the matched frame is
        returned), or raise `SessionMiss`."""
        key = self._key(message)
        keep = []
        for candidate in self._candidates:
            frame = self._frame(candidate)
            if frame is not None and frame.dir == "in" and self._key(frame.message()) == key:
                keep.append(candidate)
        if not keep:
            raise SessionMiss(self._miss(message))
        self._candidates = keep
        frame = self._frame(self.current)
        assert frame is not None
        self.position += 1
        self.received += 1
        return frame

    def _miss(self, message: Message) -> str:
        expected = self._frame(self.current)
        wanted = "the client to close (its recording ends here)" if expected is None else (
            _describe(expected.message()))
        return (
            f"No recorded session in cassette {self.cassette!r} continues with the client's message "
            f"#{self.received + 1}, {_describe(message)}: {len(self._candidates)} recording(s) of this "
            f"upgrade followed the session so far, and the closest expects {wanted}."
        )
