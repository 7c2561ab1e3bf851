"""Cassette persistence: one JSON file per cassette, with locked appends and atomic, durable writes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from emulator.cassettes.format import Cassette, Interaction, dump_cassette, load_cassette


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    # os.replace gives a new inode, so this changes even if mtime granularity hides a rewrite.
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class InvalidCassetteName(ValueError):
    """A cassette name that would escape the store directory or is otherwise unusable."""


class CassetteStore:
    """Cassettes stored as ``<directory>/<name>.json``; names may contain ``/`` for subfolders.

    Writers serialise on an exclusive ``flock`` of ``<name>.lock``. That works across processes and
    across threads, because each call opens its own file description. A file is never modified in
    place: a complete new version is written to a temporary file in the same directory, fsynced, moved
    over the old one with ``os.replace`` and the directory is fsynced. Readers, even ones killed
    mid-write, therefore only ever see the old or the new content.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, tuple[tuple[int, int, int], Cassette]] = {}
        self._cache_lock = threading.Lock()

    def path(self, name: str) -> Path:
        """The JSON file of a cassette, after checking the name stays inside the store."""
        if not name or "\\" in name or "\0" in name:
            raise InvalidCassetteName(f"invalid cassette name {name!r}")
        pure = PurePosixPath(name)
        if pure.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
            raise InvalidCassetteName(f"cassette name {name!r} must be a relative path without '.' or '..'")
        return self.directory.joinpath(*pure.parts).with_name(pure.name + ".json")

    def _lock_path(self, name: str) -> Path:
        return self.path(name).with_suffix(".lock")

    def exists(self, name: str) -> bool:
        """Whether the cassette file exists."""
        return self.path(name).is_file()

    def load(self, name: str) -> Cassette:
        """Load a cassette, reusing the cached copy while the file's inode, mtime and size are unchanged.

        The cached object is shared between callers; copy it before mutating.
        """
        path = self.path(name)
        stat = path.stat()
        with self._cache_lock:
            cached = self._cache.get(name)
            if cached and cached[0] == _identity(stat):
                return cached[1]
        cassette = load_cassette(path.read_bytes(), origin=str(path))
        with self._cache_lock:
            self._cache[name] = (_identity(stat), cassette)
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

    def save(self, cassette: Cassette) -> Path:
        """Write a whole cassette atomically (under the cassette's lock), replacing any existing file."""
        with self._locked(cassette.name):
            return self._write(cassette)

    def append(self, name: str, interaction: Interaction, *, source: str | None = "recorded") -> Cassette:
        """Append one interaction, creating the cassette if needed; returns the cassette as written.

        The current file is re-read under the lock, so appends from other threads or processes
        since this store last loaded it are kept.
        """
        with self._locked(name):
            path = self.path(name)
            if path.exists():
                cassette = load_cassette(path.read_bytes(), origin=str(path))
            else:
                cassette = Cassette(name=name, source=source)
            cassette.interactions.append(interaction)
            self._write(cassette)
            return cassette

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        lock_path = self._lock_path(name)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            # Closing the descriptor releases the flock.
            os.close(fd)

    def _write(self, cassette: Cassette) -> Path:
        path = self.path(cassette.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = dump_cassette(cassette)
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
        stat = path.stat()
        with self._cache_lock:
            self._cache[cassette.name] = (_identity(stat), cassette)
        return path
