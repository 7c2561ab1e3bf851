"""`serve --workers N` processes die with their parent, and a port already held is one clear line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.serving import free_port, wait_ready


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a reaper that may never come (PID 1 in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _serve(port: int, data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emulator", "serve", "--port", str(port), "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _worker_pids(proc: subprocess.Popen[str]) -> list[int]:
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "workers (pids" in line:
            return [int(p) for p in line.split("pids ")[1].split(")")[0].split(", ")]
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no worker pids announced; stderr: {proc.stderr.read() if proc.stderr else ''}")


def _all_gone(pids: list[int], seconds: float = 15) -> bool:
    """Whether every process in `pids` is gone within `seconds`."""
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(pid) for pid in pids)


def _kill_left(parent: subprocess.Popen[str], workers: list[int]) -> None:
    """Kill what a failed test left running."""
    for pid in workers:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    if parent.poll() is None:
        parent.kill()


def _mode(base: str) -> str:
    with urllib.request.urlopen(base + "/__emulator__/health", timeout=5) as resp:
        return str(orjson.loads(resp.read())["mode"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9 and /proc are Linux-specific here")
def test_workers_die_when_the_parent_is_killed_9_and_the_port_is_free_again(tmp_path: Path) -> None:
    port = free_port()
    parent = _serve(port, tmp_path / "a", "--workers", "2")
    workers: list[int] = []
    try:
        workers = _worker_pids(parent)
        assert all(_alive(pid) for pid in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _all_gone(workers), "workers outlived their parent"
    finally:
        _kill_left(parent, workers)

    # The port is free: a new group in another mode gets every connection.
    successor = _serve(port, tmp_path / "b", "--workers", "2", "--mode", "replay")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, timeout=60)
        assert {_mode(base) for _ in range(30)} == {"replay"}
    finally:
        successor.terminate()
        successor.wait(20)


def _one_line_refusal(proc: subprocess.Popen[str]) -> str:
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.terminate()  # it started (sharing the port) instead of refusing
        proc.communicate(timeout=30)
        raise AssertionError("serve started on a port another process holds") from None
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert str(lines[0]).startswith("Error: cannot listen on 127.0.0.1:"), stderr
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain-listener", "reuseport-listener"])
def test_a_port_already_held_is_refused_with_one_line(tmp_path: Path, workers: str, reuse_port: bool) -> None:
    holder = socket.socket()
    if reuse_port:  # what an orphaned `serve --workers` group looks like
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        line = _one_line_refusal(_serve(port, tmp_path, "--workers", workers))
        assert str(port) in line and "in use" in line
    finally:
        holder.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_sigterm_as_soon_as_the_port_answers_stops_cleanly(tmp_path: Path, workers: str) -> None:
    """SIGTERM the moment the server answers, while a `--workers` parent may still be writing its
    banner: the server stops as on any SIGTERM, with status 0. A parent that set its handlers after
    the banner ended by the signal (-15) every time here."""
    for attempt in range(3):
        port = free_port()
        proc = _serve(port, tmp_path / f"run{attempt}", "--workers", workers)
        try:
            while True:
                try:
                    _mode(f"http://127.0.0.1:{port}")
                    break
                except OSError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    time.sleep(0.002)
            proc.terminate()
            assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9 and /proc are Linux-specific here")
def test_a_worker_killed_9_stops_the_group_with_one_line_saying_so(tmp_path: Path) -> None:
    """The group serves one port: a worker gone (kill -9) stops the others and the parent, status 1,
    and stderr says which worker ended and how (it said nothing)."""
    port = free_port()
    parent = _serve(port, tmp_path, "--workers", "2")
    workers: list[int] = []
    try:
        workers = _worker_pids(parent)
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = parent.communicate(timeout=30)
        assert parent.returncode == 1, stderr
        assert f"Error: worker {workers[0]} was ended by SIGKILL; stopping the group" in stderr, stderr
        assert "Traceback" not in stderr, stderr
        assert _all_gone(workers[1:])
    finally:
        _kill_left(parent, workers)
