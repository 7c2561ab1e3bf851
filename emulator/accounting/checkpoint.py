"""WAL checkpoints on a thread of their own, so no request waits for one.

SQLite checkpoints a WAL file from inside whichever commit makes it cross 1,000 pages. For the
server's ledger that was one drain a second taking 10 ms instead of 0.5 (the copy into the main
file and its fsyncs), with every request in flight waiting behind it. A server ledger therefore
turns automatic checkpoints off for its own connection and runs them from this thread, on a
connection of its own, once a second. PASSIVE checkpoints never block a writer, and the sqlite3
module releases the GIL while one runs, so the event loop keeps serving.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading

INTERVAL_SECONDS = 1.0


class Checkpointer:
    def __init__(self, path: str, *, interval: float | None = None, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.interval = interval or INTERVAL_SECONDS
        self.busy_timeout = busy_timeout
        self.runs = 0
        # Opened here, and used once, so the files it holds open are there from the start.
        self._conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        self._checkpoint()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-checkpoint", daemon=True)
        self._thread.start()

    def _checkpoint(self) -> None:
        # Busy (another process is checkpointing, or the file is locked): next time.
        with contextlib.suppress(sqlite3.OperationalError):
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.runs += 1

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._checkpoint()
        finally:
            self._conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
