"""`serve --background` and `stop`: run the server as a detached process tracked by a pid file (for CI)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from emulator.settings import ENV_PREFIX

LISTENING = re.compile(r"listening on (http://\S+)")
# Options of `serve` that only concern the launcher, never the detached server.
LAUNCHER_FLAGS = ("--background",)
LAUNCHER_OPTIONS = ("--pid-file", "--ready-timeout")


def default_pid_file(port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"workers-ai-emulator-{port}.pid"


def server_argv(argv: list[str]) -> list[str]:
    """The `serve` arguments as given, minus the launcher's own options."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in LAUNCHER_FLAGS or any(arg.startswith(o + "=") for o in LAUNCHER_OPTIONS):
            continue
        if arg in LAUNCHER_OPTIONS:
            skip = True
            continue
        out.append(arg)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_emulator(pid: int) -> bool:
    """Guard against a recycled pid: on Linux, the process must be an emulator command line."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no /proc (macOS): trust the pid file
    try:
        return b"emulator" in cmdline.read_bytes()
    except OSError:
        return False


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _answers(base: str) -> bool:
    try:
        urllib.request.urlopen(base + "/__emulator__/health", timeout=1).read()
        return True
    except urllib.error.HTTPError:  # --no-control-plane: any HTTP answer means it listens
        return True
    except OSError:
        return False


def _check_free(pid_file: Path) -> None:
    existing = read_pid(pid_file)
    if existing is not None and _alive(existing) and _is_emulator(existing):
        raise click.ClickException(
            f"already running (pid {existing}, pid file {pid_file}); "
            f"stop it with: workers-ai-emulator stop --pid-file {pid_file}"
        )


def start(serve_args: list[str], pid_file: Path | None, port: int, ready_timeout: float) -> None:
    """Start `serve` detached, wait until it answers, write the pid file, print the banner, return.

    Without --pid-file the pid file is <tmp>/workers-ai-emulator-<port>.pid (the port the server got,
    for --port 0), so `workers-ai-emulator stop --port N` finds it.
    """
    if pid_file is None and port != 0:
        pid_file = default_pid_file(port)
    if pid_file is not None:
        _check_free(pid_file)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        log_file = pid_file.with_suffix(".log")
    else:
        log_file = Path(tempfile.gettempdir()) / f"workers-ai-emulator-launch-{os.getpid()}.log"
    env = {k: v for k, v in os.environ.items() if k != ENV_PREFIX + "BACKGROUND"}
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emulator", "serve", *serve_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + ready_timeout
    base: str | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(
                f"the server exited with status {proc.returncode} before it was "
                f"ready; its output ({log_file}):\n{_tail(log_file)}"
            )
        if base is None:
            found = LISTENING.search(log_file.read_text(errors="replace"))
            base = found.group(1) if found else None
        if base is not None and _answers(base):
            break
        time.sleep(0.05)
    else:
        proc.terminate()
        raise click.ClickException(
            f"the server did not answer within {ready_timeout:g} s; "
            f"its output ({log_file}):\n{_tail(log_file)}"
        )
    assert base is not None
    if pid_file is None:
        pid_file = default_pid_file(int(base.rsplit(":", 1)[1]))
        log_file = log_file.rename(pid_file.with_suffix(".log"))  # the server keeps writing to it
    pid_file.write_text(f"{proc.pid}\n")
    click.echo(log_file.read_text(errors="replace").rstrip())
    click.echo(f"\n  running in the background: pid {proc.pid}, pid file {pid_file}, log {log_file}")
    click.echo(f"  stop it with: workers-ai-emulator stop --pid-file {pid_file}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def stop(pid_file: Path, timeout: float) -> None:
    """SIGTERM the server named by the pid file, SIGKILL it after `timeout` s, remove the pid file."""
    pid = read_pid(pid_file)
    if pid is None:
        raise click.ClickException(
            f"no pid file at {pid_file} (nothing started with `serve --background` "
            f"there; give --pid-file or --port)"
        )
    if not _alive(pid) or not _is_emulator(pid):
        pid_file.unlink(missing_ok=True)
        click.echo(f"not running (stale pid file {pid_file} removed)")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        click.echo(f"pid {pid} ignored SIGTERM for {timeout:g} s: killed")
    else:
        click.echo(f"stopped pid {pid}")
    pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    # Only when the caller happens to be the parent (a test that ran serve --background in-process).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
