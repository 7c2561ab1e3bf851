"""Cassette persistence: one file per cassette, with locked O(1) appends and atomic, durable rewrites."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from emulator.cassettes.format import (
    Cassette,
    CassetteFormatError,
    Interaction,
    dump_cassette_lines,
    interaction_line,
    is_lines_format,
    load_cassette,
)

Identity = tuple[int, int, int]
# A cassette file larger than this is refused before it is read (`--max-cassette-bytes`).
DEFAULT_MAX_CASSETTE_BYTES = 256 * 1024 * 1024


def _identity(stat: os.stat_result) -> Identity:
    # os.replace gives a new inode and an append a new size, so this changes even if mtime
    # granularity hides a write.
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class InvalidCassetteName(ValueError):
    """A cassette name that would escape the store directory or is otherwise unusable."""


class CassetteTooLarge(CassetteFormatError):
    """A cassette file over the store's size bound (refused before reading it)."""


class CassetteNotAFile(CassetteFormatError):
    """A cassette path that is a FIFO, socket, device or directory, not a regular file (refused
    without reading it)."""


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, refused (CassetteNotAFile) unless it is a regular file.

    Checked before opening (a socket cannot be opened at all) and again on the opened descriptor, so a
    file swapped for a FIFO in between cannot get through; opened with O_NONBLOCK, so such a FIFO
    with no writer opens at once instead of holding a worker thread until something writes to it.
    Reads of a regular file ignore O_NONBLOCK."""
    _refuse_unless_regular(path, os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        _refuse_unless_regular(path, os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_unless_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise CassetteNotAFile(f"{path}: {kind}, not a regular file; refused without reading it")


class CassetteStore:
    """Cassettes stored as ``<directory>/<name>.json``; names may contain ``/`` for subfolders.

    Writers serialise on an exclusive ``flock`` of the cassette's directory. That works across
    processes and across threads, because each call opens its own file description, and leaves no
    file beside the cassettes (a lock file would litter a committed cassettes folder; the cassette
    file itself cannot carry the lock, as whole rewrites replace its inode). Recording appends one line
    (format version 2) and fsyncs it: its cost does not depend on the cassette's size. A reader, or a
    writer killed mid-append, can meet a last line without its newline; loading ignores it and the
    next append cuts it off first. Whole rewrites (`save`, and converting a version-1 file on its first
    append) go to a temporary file that is fsynced, moved over the old one with ``os.replace``, and
    the directory fsynced, so readers only ever see the old or the new content.

    Loading refuses files over `max_bytes`, paths that are not regular files (`open_regular`) and
    symlinks that lead out of the directory.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_CASSETTE_BYTES
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._cache: dict[str, tuple[Identity, Cassette]] = {}
        self._cache_lock = threading.Lock()

    def path(self, name: str) -> Path:
        """The JSON file of a cassette, after checking the name stays inside the store."""
        if not name or "\\" in name or "\0" in name:
            raise InvalidCassetteName(f"invalid cassette name {name!r}")
        pure = PurePosixPath(name)
        if pure.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
            raise InvalidCassetteName(f"cassette name {name!r} must be a relative path without '.' or '..'")
        return self.directory.joinpath(*pure.parts).with_name(pure.name + ".json")

    def exists(self, name: str) -> bool:
        """Whether the cassette file exists."""
        return self.path(name).is_file()

    def identity(self, name: str) -> Identity | None:
        """What changes whenever the cassette's file does (inode, mtime, size); None when it has no
        file. Raises InvalidCassetteName for a name or symlink that leads out of the directory."""
        path = self.path(name)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        if path.is_symlink() or any(parent.is_symlink() for parent in path.parents):
            self._check_inside(name, path)
        return _identity(stat)

    def _check_inside(self, name: str, path: Path) -> None:
        try:
            path.resolve().relative_to(self.directory.resolve())
        except ValueError:
            raise InvalidCassetteName(
                f"cassette {name!r} is a symlink that leads out of the cassette directory; refused"
            ) from None

    def read(self, name: str) -> tuple[Identity, bytes]:
        """The cassette file's identity and bytes. Refuses a file over `max_bytes` (CassetteTooLarge)
        without reading it, and a symlink that leads out of the directory (InvalidCassetteName)."""
        identity, data, fd = self.read_open(name)
        os.close(fd)
        return identity, data

    def read_open(self, name: str) -> tuple[Identity, bytes, int]:
        """`read`, and a descriptor of the file read, for reading parts of it again (`os.pread`,
        which copies without the GIL) until the caller closes it: the bytes at an offset below the
        size read stay what was read, as writers only append (after cutting a torn last line) or
        replace the file whole, which gives a new inode."""
        path = self.path(name)
        if self.identity(name) is None:
            raise FileNotFoundError(str(path))
        fd = open_regular(path)
        try:
            identity = _identity(os.fstat(fd))
            if identity[2] > self.max_bytes:
                raise CassetteTooLarge(
                    f"{path}: {identity[2]:,} bytes is over the {self.max_bytes:,}-byte cassette limit "
                    "(--max-cassette-bytes); refused without reading it"
                )
            return identity, read_range(fd, 0, identity[2]), fd
        except BaseException:
            os.close(fd)
            raise

    def load(self, name: str) -> Cassette:
        """Load a cassette, reusing the cached copy while the file's inode, mtime and size are unchanged.

        Checks the file as `read` does. The cached object is shared between callers; copy it before
        mutating.
        """
        path = self.path(name)
        identity = self.identity(name)
        if identity is not None:
            with self._cache_lock:
                cached = self._cache.get(name)
                if cached and cached[0] == identity:
                    return cached[1]
        identity, data = self.read(name)
        cassette = load_cassette(data, origin=str(path))
        with self._cache_lock:
            self._cache[name] = (identity, cassette)
        return cassette

    def names(self) -> list[str]:
        """Every cassette name in the store, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p.relative_to(self.directory).with_suffix("").as_posix()
            for p in self.directory.rglob("*.json")
            if p.is_file() and not p.name.startswith(".")
        )

    def save(self, cassette: Cassette, *, last_line: bytes | None = None) -> Path:
        """Write a whole cassette atomically (under the cassette's lock), replacing any existing file.
        `last_line`: the last interaction's line, built already (`interaction_line`'s bytes)."""
        with self._locked(cassette.name):
            return self._write(cassette, last_line)

    def append(
        self, name: str, interaction: Interaction, *, source: str | None = "recorded",
        line: bytes | None = None,
    ) -> tuple[Identity | None, Identity]:
        """Append one interaction, creating the cassette if needed; returns the file's identity just
        before and just after this append (equal `before` to what a reader loaded means the reader
        can add the interaction itself instead of reading the file again).

        A version-2 file gets one line appended (other writers' lines, under the same lock, are
        kept). A version-1 file is rewritten once as version 2 with the new interaction. `line` is the
        interaction's line when it is built already (`interaction_line`'s bytes, serialised in slices
        for a large body).
        """
        line = line if line is not None else interaction_line(interaction)
        with self._locked(name):
            path = self.path(name)
            before = self.identity(name)
            if before is None:
                self._write(Cassette(name=name, source=source, interactions=[interaction]), line)
            else:
                fd = open_regular(path)
                try:
                    head = os.pread(fd, 4096, 0)
                finally:
                    os.close(fd)
                if is_lines_format(head):
                    self._append_line(path, line)
                else:
                    cassette = load_cassette(path.read_bytes(), origin=str(path))
                    cassette.interactions.append(interaction)
                    self._write(cassette, line)
            after = _identity(path.stat())
            with self._cache_lock:
                cached = self._cache.get(name)
                if cached is not None and cached[0] == before:
                    cached[1].interactions.append(interaction)
                    self._cache[name] = (after, cached[1])
            return before, after

    @staticmethod
    def _append_line(path: Path, line: bytes) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A writer killed mid-append left a torn last line: cut it off before appending.
                os.ftruncate(fd, _after_last_newline(fd, size))
            os.lseek(fd, 0, os.SEEK_END)
            written = 0
            with memoryview(line) as view:
                while written < len(line):  # a write may take part of a long line
                    written += os.write(fd, view[written:])
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        folder = self.path(name).parent
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            # Closing the descriptor releases the flock.
            os.close(fd)

    def _write(self, cassette: Cassette, last_line: bytes | None = None) -> Path:
        path = self.path(cassette.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = dump_cassette_lines(cassette, last_line=last_line)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            # mkstemp creates 0600 files; cassettes are meant to be shared and committed.
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # Without syncing the directory, a crash could lose the rename even though the data is on disk.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        # Not kept in the cache: a recording run never loads what it writes, and would keep every
        # recorded body in memory (an 18 MB image a call, its lists walked by each full collection).
        return path


def read_range(fd: int, start: int, end: int) -> bytes:
    """The file's bytes from `start` to `end` (fewer if it is shorter), read without the GIL."""
    parts: list[bytes] = []
    while start < end:
        part = os.pread(fd, end - start, start)
        if not part:
            break
        parts.append(part)
        start += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _after_last_newline(fd: int, size: int, block: int = 65536) -> int:
    """The offset just past the file's last newline (0 if it has none), read backwards in blocks."""
    end = size
    while end > 0:
        start = max(0, end - block)
        chunk = os.pread(fd, end - start, start)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0
