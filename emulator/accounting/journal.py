"""The ledger's write-ahead journal: a charge is in a file before its answer leaves, at memcpy cost.

A SQLite transaction costs about 50-75 µs (WAL pages for the totals row, the call row and its
index), more than a bare aiohttp server spends on a whole request; even one `write()` per charge,
or a wait to share one, measured slower than the rest of a cached answer. So each server process
appends its charges to a journal file of its own that it has mapped into memory (`MAP_SHARED`):
an append is a copy into the page cache, with no system call, and the page cache outlives the
process, so a kill -9 loses nothing. The journal moves into SQLite a moment later in one
transaction for hundreds of calls. Whoever opens the ledger next (a restarted server, the `usage`
command, another worker) replays the journals whose process is gone. A durable ledger also
`msync`s each batch, which covers an OS crash too.

The file is allocated whole up front (`posix_fallocate`: a full disk fails here, not with a SIGBUS
on some later append) and zero-filled, so its data ends at the first NUL byte. Readers take only
whole lines before that point, which also makes a line a concurrent writer has half copied
invisible. A full journal is applied and replaced by a fresh one.

Any process may apply any journal's lines: each transaction that applies lines also records, in
the same transaction, how many bytes of that journal are applied (table `journals`), and applies
only lines past that mark. So a reader in another process sees every answered call, and no line
is ever counted twice, even after a crash between a commit and an unlink. A journal is live while
its process holds an exclusive `flock` on it; one nobody holds is an orphan, applied and removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import mmap
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

SUFFIX = ".journal-"
# The size of one journal file (about 14,000 charges); a full one is applied and replaced.
CAPACITY = 2 * 1024 * 1024
PAGE = mmap.PAGESIZE


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
    surface: str = ""

    def encode(self) -> bytes:
        return encode_line(self.ts, self.account, self.model, self.neurons, self.status, self.source,
                           self.estimated, self.surface)

    @classmethod
    def decode(cls, line: bytes) -> JournalLine | None:
        try:
            # Seven fields: a line without the surface, which a journal left by an older server holds.
            ts, account, model, neurons, status, source, estimated, *rest = orjson.loads(line)
            if len(rest) > 1:
                return None
            return cls(float(ts), str(account), str(model), float(neurons), int(status), str(source),
                       bool(estimated), str(rest[0]) if rest else "")
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return None  # a line torn by a power loss: the charge never reached the disk whole


def encode_line(ts: float, account: str, model: str, neurons: float, status: int, source: str,
                estimated: bool, surface: str) -> bytes:
    return orjson.dumps((ts, account, model, neurons, status, source, estimated, surface)) + b"\n"


class Journal:
    """This process's journal: a mapped, preallocated file, locked for as long as the process lives."""

    def __init__(self, db_path: str, *, fsync: bool = False, at_least: int = 0) -> None:
        self.path = f"{db_path}{SUFFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.name = os.path.basename(self.path)
        self.fsync = fsync
        self.capacity = capacity = max(CAPACITY, at_least)
        self.size = 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            os.posix_fallocate(self._fd, 0, capacity)
            self._map = mmap.mmap(self._fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            self._discard()
            raise

    def fits(self, length: int) -> bool:
        return self.size + length <= self.capacity

    def append(self, data: bytes) -> int:
        """Copy `data` in (msync'd when durable); returns the journal's size after it."""
        start, end = self.size, self.size + len(data)
        if end > self.capacity:
            raise ValueError("journal full")  # callers check `fits` and start a new journal first
        self._map[start:end] = data
        if self.fsync:
            first_page = start - start % PAGE
            self._map.flush(first_page, end - first_page)
        self.size = end
        return end

    def remove(self) -> None:
        self._map.close()
        self._discard()

    def _discard(self) -> None:
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
        end = data.find(b"\0")
        if end >= 0:
            data = data[:end]  # the unused, zero-filled rest of the file
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
