"""The ledger's write-ahead journal: a charge reaches disk with one append before its answer leaves.

A SQLite transaction costs about 50-75 µs (WAL pages for the totals row, the call row and its
index), more than a bare aiohttp server spends on a whole request. So the server appends each
batch of charges to a journal file of its own (one `write()`, about 2 µs) and moves the journal
into SQLite a moment later in one transaction for hundreds of calls. `write()` has handed the bytes
to the kernel, so a kill -9 loses nothing: whoever opens the ledger next (a restarted server, the
`usage` command, another worker) replays the journals whose process is gone.

Any process may apply any journal's lines: each transaction that applies lines also records, in
the same transaction, how many bytes of that journal are applied (table `journals`), and applies
only lines past that mark. So a reader in another process (the `usage` command, another worker)
first brings SQLite up to date with every journal and sees every answered call, and no line is
ever counted twice, even after a crash between a commit and an unlink. A journal is live while
its process holds an exclusive `flock` on it; one nobody holds is an orphan, applied and removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

SUFFIX = ".journal-"
# A journal is replaced by a fresh one once this big, right after it was applied, so a long run
# does not keep an ever-growing file.
ROTATE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One charge as written: the clock's UNIX time (the day and hour are derived from it, in UTC)."""

    ts: float
    account: str
    model: str
    neurons: float
    status: int
    source: str
    estimated: bool

    def encode(self) -> bytes:
        return encode_line(self.ts, self.account, self.model, self.neurons, self.status, self.source,
                           self.estimated)

    @classmethod
    def decode(cls, line: bytes) -> JournalLine | None:
        try:
            ts, account, model, neurons, status, source, estimated = orjson.loads(line)
            return cls(float(ts), str(account), str(model), float(neurons), int(status), str(source),
                       bool(estimated))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return None  # a line torn by a power loss: the charge never reached the disk whole


def encode_line(ts: float, account: str, model: str, neurons: float, status: int, source: str,
                estimated: bool) -> bytes:
    return orjson.dumps((ts, account, model, neurons, status, source, estimated)) + b"\n"


class Journal:
    """This process's journal: append-only, locked for as long as the process lives."""

    def __init__(self, db_path: str, *, fsync: bool = False) -> None:
        self.path = f"{db_path}{SUFFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.name = os.path.basename(self.path)
        self.fsync = fsync
        self.size = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def append(self, data: bytes) -> int:
        """Write `data`; returns the journal's size after it."""
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)
        self.size += len(data)
        return self.size

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)


@dataclass(slots=True)
class JournalFile:
    """Another ledger's journal, opened for reading; `orphan` when its process is gone (we then hold
    its lock until `close`)."""

    path: str
    fd: int
    orphan: bool

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def lines(self, start: int) -> tuple[list[JournalLine], int]:
        """The whole lines after byte `start`, and the offset just past the last of them (a line its
        process is still writing is left for later)."""
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        parsed = [JournalLine.decode(line) for line in complete.splitlines() if line.strip()]
        return [line for line in parsed if line is not None], start + len(complete)

    def close(self) -> None:
        if self.orphan:  # applied to its end by now: nobody needs it again
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self.fd)


def journals(db_path: str, *, skip: str | None = None) -> Iterator[JournalFile]:
    """The journals of `db_path` other than `skip`, each marked live or orphaned."""
    for path in sorted(glob.glob(glob.escape(db_path) + SUFFIX + "*")):
        if os.path.basename(path) == skip:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # applied and removed by another process meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            orphan = True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
            orphan = False  # its process is alive and holds the lock
        yield JournalFile(path, fd, orphan)
