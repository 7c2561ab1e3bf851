"""The helper processes that redact a long piece of text without a cut character
(`cassettes/shapes_process.py`): a helper gives back what the five substitutions give in this
process, a piece that it could not finish is worked out here, a new helper replaces a dead one, the
helper dies with the process that started it, and pieces that arrive together are worked out by
helpers side by side."""

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import orjson
import pytest
import requests

from emulator.cassettes import Redactor, redact, shapes, shapes_process
from emulator.cassettes.shapes_process import (
    HELPER_PROCESSES,
    ShapesProcess,
    ShapesProcesses,
    ShapesProcessUnavailable,
)

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
    helpers = ShapesProcesses(1)
    helper = helpers._helpers[0]
    text = _long_text(12)  # seconds of substitutions: the helper is killed in the middle of them
    redactor = Redactor()
    with mock.patch.object(redact, "SHAPES_PROCESSES", helpers):
        assert helper.redact_shapes("Bearer abcdefgh12345678", "{a}") == "Bearer REDACTED"
        first = helper._process
        assert first is not None
        threading.Timer(0.5, first.kill).start()
        got = redactor.redact_text(text)
        assert first.poll() is not None
        assert got == redactor._redact_shapes(text)
        assert helper.redact_shapes("Bearer abcdefgh12345678", "{a}") == "Bearer REDACTED"
        assert helper._process is not None and helper._process.pid != first.pid


def test_a_long_utf8_piece_is_worked_out_here_when_no_helper_can_start() -> None:
    text = _long_text(1)
    redactor = Redactor(account_ids=[])
    with mock.patch.object(ShapesProcess, "_started", side_effect=ShapesProcessUnavailable("no helper")):
        got = redactor.redact_utf8(text.encode())
    assert got == redactor.redact_text(text).encode()
    assert b"abcdefgh" not in got and b"a@b.io" not in got


def test_the_helper_dies_with_the_process_that_started_it() -> None:
    """kill -9 of a process whose helper is busy: the kernel ends the helper (PR_SET_PDEATHSIG)."""
    program = textwrap.dedent("""
        import base64, random, sys, threading, time
        from emulator.cassettes import redact
        from emulator.cassettes.shapes_process import ShapesProcess
        helper = ShapesProcess()
        helper.redact_shapes("x", "{a}")
        print(helper._process.pid, flush=True)
        data = base64.b64encode(random.Random(1).randbytes(9_000_000)).decode()
        # Every shape's word in it: all five substitutions run, seconds of work.
        text = data + " Bearer abcdefgh12345678 api_key=zzzzzzzzzz1 a@b.io accounts/x " + data
        helper.redact_shapes(text, "{a}")
        time.sleep(60)  # alive until killed, should the helper finish first on a fast machine
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


@pytest.mark.parametrize("text", ["", "x", "Bearer abcdefgh12345678 é😀 日本語", "日本語 😀 " * 300_000,
                                  "a@b.io " + "日本語" * 100_000],
                         ids=["empty", "one-letter", "shapes", "cjk-and-emoji-frames", "email-and-cjk"])
def test_utf8_text_crosses_the_pipe_in_frames_of_whole_characters(text: str) -> None:
    """UTF-8 text's bytes go in frames cut before a character's first byte (FRAME_CHARS shrunk to a
    few bytes, so frames end inside multi-byte characters unless moved) and come back as bytes."""
    data = text.encode()
    with mock.patch.object(shapes_process, "FRAME_CHARS", 5):
        got = ShapesProcess().redact_shapes_utf8(data, "{a}")
    assert got == shapes.redact_shapes(text, "{a}").encode()
    if shapes.redact_shapes(text, "{a}") == text:
        assert got is data


def test_pieces_that_arrive_together_are_worked_out_by_helpers_side_by_side() -> None:
    """Two pieces at once start a second helper, each works one; pieces one after another keep to one."""
    texts = [_long_text(4), _long_text(5)]  # a second or so of substitutions each
    helpers = ShapesProcesses(2)
    together = threading.Barrier(2)
    got: dict[int, str] = {}
    spans: dict[int, tuple[float, float]] = {}

    def redact_one(at: int) -> None:
        together.wait()
        began = time.monotonic()
        got[at] = helpers.redact_shapes(texts[at], "{a}")
        spans[at] = (began, time.monotonic())

    # A helper ends with the thread that started it (PR_SET_PDEATHSIG): the pool's threads outlive
    # the check, as the server's worker threads do.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(redact_one, range(2)))
        assert len(set(helpers.pids())) == 2
    assert got == {at: shapes.redact_shapes(text, "{a}") for at, text in enumerate(texts)}
    assert max(began for began, _ in spans.values()) < min(ended for _, ended in spans.values())

    one_by_one = ShapesProcesses(2)
    for text in texts:
        assert one_by_one.redact_shapes(text, "{a}") == shapes.redact_shapes(text, "{a}")
    assert len(one_by_one.pids()) == 1


def _helper_children(pid: int) -> list[int]:
    """The server's child processes that are redaction helpers (Linux's /proc)."""
    children: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listed:
            children += [int(child) for child in listed.read().split()]
    helpers = []
    for child in children:
        with open(f"/proc/{child}/cmdline", "rb") as cmdline:
            if b"shapes_process" in cmdline.read():
                helpers.append(child)
    return helpers


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the server's children from /proc")
@pytest.mark.skipif(HELPER_PROCESSES < 2, reason="one core: one helper process")
def test_concurrent_recordings_of_long_strings_are_redacted_side_by_side(tmp_path: Path) -> None:
    """Over HTTP: two requests recorded at once, each a JSON body holding a long base64 string with
    every credential shape in it (seconds of substitutions), are redacted by two helper processes
    of the server, and each is stored redacted."""
    from tests.fake_upstream import REAL_ACCOUNT, REAL_TOKEN, upstream_process
    from tests.serving import serve

    path = f"/client/v4/accounts/{REAL_ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
    headers = {"Authorization": f"Bearer {REAL_TOKEN}", "Content-Type": "application/json"}
    bodies = [orjson.dumps({"prompt": f"hi {at}", "audio": _long_text(4 + at)}) for at in range(2)]
    cassettes = tmp_path / "cassettes"
    with upstream_process() as upstream, serve(
            "--mode", "record", "--upstream", upstream, "--plan", "paid", "--cassette", "together",
            "--cassette-dir", str(cassettes), data_dir=tmp_path) as (url, proc):
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda body: requests.post(url + path, data=body, headers=headers,
                                                               timeout=60), bodies))
        assert [answer.status_code for answer in answers] == [200, 200]
        assert len(_helper_children(proc.pid)) == 2
    stored = (cassettes / "together.json").read_bytes()
    assert b"abcdefgh12345678" not in stored and b"zzzzzzzzzz1" not in stored
