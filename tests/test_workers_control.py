"""`serve --workers 2`: one control plane for both workers (stubs, faults, clock, mode, reset, log).

Every call opens a new connection, so the kernel spreads the calls over both workers; each test
checks from the request log that both workers answered some of them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT
from tests.serving import serve

LLAMA = "@cf/meta/llama-3-8b-instruct"
CALLS = 60


def http(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": "Bearer t", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    return status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw


def control(base: str, method: str, path: str, body: Any = None) -> Any:
    status, answer = http(base, method, f"/__emulator__/{path}", body)
    assert status < 300, answer
    return answer


def run(base: str, i: int) -> tuple[int, Any]:
    return http(base, "POST", f"/client/v4/accounts/{ACCOUNT}/ai/run/{LLAMA}", {"prompt": f"question {i}"})


def failures(base: str, calls: int = CALLS) -> list[int]:
    """Which of `calls` sequential calls failed (1-based), each on a new connection."""
    return [i + 1 for i in range(calls) if run(base, i)[0] != 200]


def workers_seen(base: str) -> set[int]:
    return {e["worker"] for e in control(base, "GET", "requests")["requests"]}


def both_workers_answered(base: str, extra: int = 200) -> bool:
    """Both workers answered calls. The kernel spreads new connections over the two listening sockets
    (SO_REUSEPORT), but on a loaded machine a run of calls can all land on one, so up to `extra` more
    calls are made until both show in the request log."""
    for i in range(extra):
        if workers_seen(base) == {0, 1}:
            return True
        run(base, 10_000 + i)
    return workers_seen(base) == {0, 1}


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve("--workers", "2", "--plan", "paid", data_dir=tmp_path_factory.mktemp("w2")) as (base, _):
        yield base


@pytest.fixture
def base(two_workers: str) -> str:
    control(two_workers, "POST", "reset")
    return two_workers


def test_a_stub_set_once_answers_every_later_call_on_every_worker(base: str) -> None:
    control(base, "POST", "stubs", {"model": LLAMA, "text": "stubbed everywhere"})
    answers = [run(base, i) for i in range(CALLS)]
    assert all(status == 200 and body["result"]["response"] == "stubbed everywhere"
               for status, body in answers)
    log = control(base, "GET", "requests")["requests"]
    assert len(log) == CALLS and all(e["stubbed"] and e["stub_id"] == "stub-1" for e in log)
    [stub] = control(base, "GET", "stubs")["stubs"]
    assert stub["calls"] == CALLS  # every worker's takes, counted in one place
    assert both_workers_answered(base)


def test_a_stub_sequence_and_times_count_across_workers(base: str) -> None:
    control(base, "POST", "stubs", {"model": LLAMA, "times": 5,
                                    "results": [{"text": f"answer {n}"} for n in range(1, 4)]})
    texts = [body["result"]["response"] for _, body in (run(base, i) for i in range(8))]
    assert texts[:5] == ["answer 1", "answer 2", "answer 3", "answer 3", "answer 3"]
    assert all(not text.startswith("answer ") for text in texts[5:])  # used up: the fake answers
    assert both_workers_answered(base)


def test_nth_every_and_times_count_every_workers_calls(base: str) -> None:
    control(base, "POST", "faults", {"kind": "capacity", "model": LLAMA, "every": 4, "times": 10})
    control(base, "POST", "faults", {"kind": "timeout", "model": LLAMA, "nth": 7})
    assert failures(base) == [4, 7, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    faults = control(base, "GET", "faults")["faults"]
    assert [(f["calls"], f["fired"]) for f in faults] == [(CALLS, 10), (CALLS, 1)]
    assert both_workers_answered(base)


def test_a_seeded_probability_fails_the_same_calls_as_one_process(base: str, tmp_path: Path) -> None:
    spec = {"kind": "upstream", "model": LLAMA, "probability": 0.3, "seed": 11,
            "latency_ms": {"distribution": "uniform", "min_ms": 0, "max_ms": 2}}
    control(base, "POST", "faults", spec)
    shared = failures(base)
    assert both_workers_answered(base)
    with serve("--plan", "paid", data_dir=tmp_path) as (single, _):
        control(single, "POST", "faults", spec)
        alone = failures(single)
    assert shared == alone and 5 < len(shared) < 35


def test_clock_mode_and_removal_reach_every_worker(base: str) -> None:
    control(base, "POST", "clock", {"now": "2031-05-06T07:08:09Z"})
    assert {control(base, "GET", "clock")["now"] for _ in range(20)} == {"2031-05-06T07:08:09+00:00"}
    control(base, "POST", "faults", {"kind": "capacity", "model": LLAMA, "name": "busy"})
    assert failures(base, 20) == list(range(1, 21))
    control(base, "DELETE", "faults/busy")
    assert failures(base, 20) == []
    # replay of a cassette that holds nothing: every worker answers the replay miss.
    control(base, "POST", "mode", {"mode": "replay", "cassette": "empty"})
    statuses = {run(base, i)[0] for i in range(20)}
    control(base, "POST", "mode", {"mode": "mock"})
    assert 200 not in statuses
    assert {run(base, i)[0] for i in range(20)} == {200}
    assert {control(base, "GET", "health")["mode"] for _ in range(20)} == {"mock"}


def test_the_request_log_holds_every_call_and_reset_clears_every_worker(base: str) -> None:
    for i in range(CALLS):
        assert run(base, i)[0] == 200
    log = control(base, "GET", "requests")["requests"]
    ids = [e["id"] for e in log]
    assert len(log) == CALLS and ids == sorted(set(ids))
    assert {e["body"]["prompt"] for e in log} == {f"question {i}" for i in range(CALLS)}
    assert both_workers_answered(base)
    for entry in log[:10]:  # each one found, whichever worker is asked
        assert control(base, "GET", f"requests/{entry['id']}")["body"] == entry["body"]
    assert len(control(base, "GET", "requests?limit=7")["requests"]) == 7
    status, page = http(base, "GET", "/__emulator__/")
    assert status == 200  # the dashboard lists the latest 25, whichever worker answered them
    assert all(f"request={e['id']}".encode() in page for e in log[-25:])
    assert f"showing\n {min(25, CALLS)} of {CALLS} calls in the log".encode() in page  # both workers' calls
    assert control(base, "GET", "usage")["requests"] == CALLS
    control(base, "POST", "reset")
    for _ in range(10):
        assert control(base, "GET", "requests")["requests"] == []
    assert control(base, "GET", "usage")["requests"] == 0


def test_the_worker_log_route_is_not_on_the_port(base: str) -> None:
    status, _ = http(base, "GET", "/__emulator__/worker-log")
    assert status == 404
