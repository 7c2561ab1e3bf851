"""The helper process that redacts a long piece of text without a cut character
(`cassettes/shapes_process.py`): it gives back what the five substitutions give in this process, a
piece that it could not finish is worked out here, a new helper replaces a dead one, and the helper
dies with the process that started it."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from unittest import mock

import pytest

from emulator.cassettes import Redactor, redact, shapes
from emulator.cassettes.shapes_process import ShapesProcess

ACCOUNT = "0123456789abcdef0123456789abcdef"


def _long_text(megabytes: int) -> str:
    """Base64 text (no `,` `;` `&` `}` `]`: one piece) holding each credential shape."""
    data = base64.b64encode(random.Random(megabytes).randbytes(megabytes * 750_000)).decode()
    middle = len(data) // 2
    return ("Authorization: Bearer abcdefgh12345678 " + data[:middle]
            + f" api_key=zzzzzzzzzz1 a@b.io accounts/{ACCOUNT} é😀 " + data[middle:] + " " + "f" * 37)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has not been waited for yet, but is gone
        return stat.read().split(") ")[1][0] != "Z"


def test_a_long_piece_is_redacted_in_the_helper_process_as_here() -> None:
    text = _long_text(1)
    redactor = Redactor(account_ids=[])
    with mock.patch.object(ShapesProcess, "redact_shapes", autospec=True,
                           side_effect=ShapesProcess.redact_shapes) as helper:
        got = redactor.redact_text(text)
    assert helper.call_count == 1
    assert len(helper.call_args.args[1]) > redact.LONG_PIECE
    assert got == redactor._redact_shapes(text)
    assert "abcdefgh" not in got and "zzzz" not in got and "a@b.io" not in got and "f" * 37 not in got
    assert "{account_id}" in got and "é😀" in got


def test_an_unchanged_long_piece_is_given_back_itself() -> None:
    text = base64.b64encode(random.Random(7).randbytes(300_000)).decode()
    assert ShapesProcess().redact_shapes(text, "{account_id}") is text


def test_a_dead_helper_is_replaced_and_a_piece_it_could_not_finish_is_worked_out_here() -> None:
    helper = ShapesProcess()
    text = _long_text(12)  # seconds of substitutions: the helper is killed in the middle of them
    redactor = Redactor()
    with mock.patch.object(redact, "_SHAPES_PROCESS", helper):
        assert helper.redact_shapes("Bearer abcdefgh12345678", "{a}") == "Bearer REDACTED"
        first = helper._process
        assert first is not None
        threading.Timer(0.5, first.kill).start()
        got = redactor.redact_text(text)
        assert first.poll() is not None
        assert got == redactor._redact_shapes(text)
        assert helper.redact_shapes("Bearer abcdefgh12345678", "{a}") == "Bearer REDACTED"
        assert helper._process is not None and helper._process.pid != first.pid


def test_the_helper_dies_with_the_process_that_started_it() -> None:
    """kill -9 of a process whose helper is busy: the kernel ends the helper (PR_SET_PDEATHSIG)."""
    program = textwrap.dedent("""
        import base64, random, sys, threading
        from emulator.cassettes import redact
        from emulator.cassettes.shapes_process import ShapesProcess
        helper = ShapesProcess()
        helper.redact_shapes("x", "{a}")
        print(helper._process.pid, flush=True)
        text = base64.b64encode(random.Random(1).randbytes(9_000_000)).decode() + " Bearer abcdefgh12345678"
        helper.redact_shapes(text, "{a}")
    """)
    parent = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        helper_pid = int(parent.stdout.readline())
        time.sleep(0.5)
        assert _alive(helper_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(helper_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(helper_pid)
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.parametrize("text", ["", "x", "\ud800 lone surrogate Bearer abcdefgh12345678",
                                  "日本語 " * 400_000],
                         ids=["empty", "one-letter", "lone-surrogate", "cjk-frames"])
def test_any_text_crosses_the_pipe_whole(text: str) -> None:
    assert ShapesProcess().redact_shapes(text, "{a}") == shapes.redact_shapes(text, "{a}")
