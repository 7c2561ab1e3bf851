"""A helper process that finds the credential shapes in one long piece of text.

`Redactor` searches a long text for the credential shapes a piece at a time, each piece cut just
after a character none of the shapes can hold (`redact._CUT`), with the GIL handed over between
pieces. A text with none of those characters for megabytes (base64 sent as ``text/plain``, prose
without a comma) is one piece, and `re.sub` holds the GIL for its whole call: the five
substitutions over 20 MB held it for seconds, and every request on the event loop's thread waited
that long. Such a piece is sent to this process instead: the calling thread writes it to the
process's stdin and waits for the answer on its stdout, and the GIL is free while it waits. The
process runs the very same `shapes.redact_shapes`, so the text it sends back is the one the
calling process would have made.

A process is started on first use and takes one piece at a time; pieces that arrive together (from
concurrent requests, each on its own worker thread) go to up to one process per core
(`ShapesProcesses`), started only when every one already started is busy. Each emulator process has
its own (a forked `serve --workers` worker starts its own). A process exits when its parent does: on
Linux the kernel sends it SIGTERM (PR_SET_PDEATHSIG), elsewhere a thread watches for the parent to
change, and its stdin's end of file ends it anyway. `ShapesProcessUnavailable` says the process
could not be started or failed mid-piece; the caller then works the piece out itself.

The wire format, both ways: a text is a run of frames, each an 8-byte big-endian length and that
many bytes of UTF-8 (lone surrogates kept, "surrogatepass"), ending with a frame of length 0; a
frame holds whole characters. A request is the account-id placeholder, then the text. An answer
starts with one byte: ``=`` the text is unchanged, ``T`` the redacted text follows.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TypeVar

from emulator.cassettes import utf8
from emulator.cassettes.shapes import redact_shapes
from emulator.gil import GilTurns

# Characters a frame holds: encoded and decoded a frame at a time, so no one call holds the GIL
# for long (encoding 20 MB of CJK text to UTF-8 in one call takes ~20-40 ms).
FRAME_CHARS = 1 << 20
_LENGTH_BYTES = 8
# `-m` would run this module a second time: the package `emulator.cassettes` imports it first.
_MAIN = "from emulator.cassettes.shapes_process import main; main()"
_UNCHANGED = b"="
_Answer = TypeVar("_Answer", str, bytes)
_TEXT = b"T"


class ShapesProcessUnavailable(Exception):
    """The helper process could not be started, or failed before it answered."""


class ShapesProcess:
    """One helper process of this emulator process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0  # the pid that started `_process` (a forked child starts its own)

    def redact_shapes(self, text: str, placeholder_account: str) -> str:
        """`shapes.redact_shapes(text, placeholder_account)`, worked out in the helper process."""
        return self._ask(placeholder_account, lambda stream: _write_text(stream, text), text, _read_text)

    def redact_shapes_utf8(self, data: bytes, placeholder_account: str) -> bytes:
        """`redact_shapes` of UTF-8 text given and given back as its bytes (`data` itself when
        unchanged), never decoded whole here: written in frames cut before a character's first byte,
        the redacted text's frames joined as they come."""
        return self._ask(placeholder_account, lambda stream: _write_utf8(stream, data), data,
                         lambda stream: b"".join(_read_frames(stream)))

    def _ask(self, placeholder_account: str, write: Callable[[IO[bytes]], None], unchanged: _Answer,
             read: Callable[[IO[bytes]], _Answer]) -> _Answer:
        """One request: the placeholder, then the text `write` writes; `unchanged` when the helper
        answers so, else what `read` reads of its answer."""
        with self._lock:
            process = self._started()
            try:
                assert process.stdin is not None and process.stdout is not None
                _write_text(process.stdin, placeholder_account)
                write(process.stdin)
                process.stdin.flush()
                kind = process.stdout.read(1)
                if kind == _UNCHANGED:
                    return unchanged
                if kind == _TEXT:
                    return read(process.stdout)
                raise EOFError("the helper process ended")
            except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
                self._stop()
                raise ShapesProcessUnavailable(str(exc)) from exc

    def pid(self) -> int | None:
        """The helper's process id while it runs for this process; None before it starts."""
        process = self._process
        if process is None or self._owner != os.getpid() or process.poll() is not None:
            return None
        return process.pid

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._owner == os.getpid() and self._process.poll() is None:
            return self._process
        if self._owner == os.getpid():
            self._stop()
        # A process forked from one that had started a helper leaves that helper to its parent.
        # PR_SET_PDEATHSIG fires when the *thread* that started the helper ends: the event loop's
        # worker threads live as long as the process, and a helper whose thread ended is found
        # dead here (`poll`) and started anew.
        self._process = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _MAIN, str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            )
        except OSError as exc:
            raise ShapesProcessUnavailable(str(exc)) from exc
        self._owner = os.getpid()
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        process.kill()
        process.wait()


# Helper processes at most: one per core, as each works one piece with a core to itself.
HELPER_PROCESSES = min(4, os.cpu_count() or 1)


class ShapesProcesses:
    """Up to `size` helper processes: a piece goes to one that is free, and another is started only
    when every one started is busy, so pieces of concurrent requests are worked out side by side
    and one piece at a time keeps to one process."""

    def __init__(self, size: int = HELPER_PROCESSES) -> None:
        self._slots = threading.Semaphore(size)
        self._lock = threading.Lock()
        self._helpers = tuple(ShapesProcess() for _ in range(size))
        # Free helpers, the last one given back on top: pieces one after another reuse one process.
        self._free = list(self._helpers)

    def redact_shapes(self, text: str, placeholder_account: str) -> str:
        """`shapes.redact_shapes(text, placeholder_account)`, worked out in a free helper process;
        raises ShapesProcessUnavailable as `ShapesProcess.redact_shapes` does."""
        with self._helper() as helper:
            return helper.redact_shapes(text, placeholder_account)

    def redact_shapes_utf8(self, data: bytes, placeholder_account: str) -> bytes:
        """`ShapesProcess.redact_shapes_utf8` in a free helper process."""
        with self._helper() as helper:
            return helper.redact_shapes_utf8(data, placeholder_account)

    @contextlib.contextmanager
    def _helper(self) -> Iterator[ShapesProcess]:
        with self._slots:
            with self._lock:
                helper = self._free.pop()
            try:
                yield helper
            finally:
                with self._lock:
                    self._free.append(helper)

    def pids(self) -> list[int]:
        """The process ids of the helpers running now (for tests and diagnostics)."""
        return [pid for helper in self._helpers if (pid := helper.pid()) is not None]


def _write_text(stream: IO[bytes], text: str) -> None:
    _write_frames(stream, (text[start:start + FRAME_CHARS].encode("utf-8", "surrogatepass")
                           for start in range(0, len(text), FRAME_CHARS)))


def _write_utf8(stream: IO[bytes], data: bytes) -> None:
    """UTF-8 text's bytes as frames of FRAME_CHARS bytes or so, each holding whole characters."""
    _write_frames(stream, utf8.whole_character_slices(data, FRAME_CHARS))


def _write_frames(stream: IO[bytes], frames: Iterable[bytes]) -> None:
    """Each frame with its length, then the frame of length 0 that ends the text."""
    turns = GilTurns()
    for frame in frames:
        stream.write(len(frame).to_bytes(_LENGTH_BYTES, "big"))
        stream.write(frame)
        turns.tick()
    stream.write(bytes(_LENGTH_BYTES))


def _read_frames(stream: IO[bytes]) -> Iterator[bytes]:
    """The frames of one text, as bytes."""
    while True:
        length = int.from_bytes(_read_exactly(stream, _LENGTH_BYTES), "big")
        if not length:
            return
        yield _read_exactly(stream, length)


def _read_text(stream: IO[bytes]) -> str:
    parts: list[str] = []
    turns = GilTurns()
    for frame in _read_frames(stream):
        parts.append(frame.decode("utf-8", "surrogatepass"))
        turns.tick()
    return "".join(parts)


def _read_exactly(stream: IO[bytes], length: int) -> bytes:
    data = stream.read(length)
    if len(data) != length:
        raise EOFError("the other end closed the pipe")
    return data


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The helper process's loop: answer each request on `requests` until its end of file."""
    while True:
        try:
            placeholder_account = _read_text(requests)
            text = _read_text(requests)
        except EOFError:
            return
        redacted = redact_shapes(text, placeholder_account)
        if redacted == text:
            answers.write(_UNCHANGED)
        else:
            answers.write(_TEXT)
            _write_text(answers, redacted)
        answers.flush()


def main() -> None:
    from emulator.lifeline import die_with_parent

    die_with_parent(int(sys.argv[1]))
    with contextlib.suppress(BrokenPipeError):  # the parent went away mid-answer
        serve(sys.stdin.buffer, sys.stdout.buffer)

