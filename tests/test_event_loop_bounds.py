"""One request cannot freeze a `serve` process: input limits are applied before the work they bound,
and stub prompt patterns match in linear time (RE2). Each test watches `/health` while the hostile
request runs; the bound asserted is loose on purpose (a shared CI machine), the figure measured on an
idle machine is in docs/reliability.md."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ACCOUNT
from tests.serving import serve

AUTH = {"Authorization": "Bearer loop-bound-token"}
BGE_LARGE = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/baai/bge-large-en-v1.5"
LLAMA = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("loop")
    with serve("--plan", "paid", data_dir=data_dir) as (url, _proc):
        yield url


class HealthWatch:
    """Polls /health on its own connection while a request runs; `worst` is the slowest answer."""

    def __init__(self, base: str) -> None:
        self.base, self.worst, self._stop = base, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.perf_counter()
                session.get(self.base + "/__emulator__/health", timeout=60).raise_for_status()
                self.worst = max(self.worst, time.perf_counter() - started)
                time.sleep(0.01)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_texts_past_the_models_input_limit_are_refused_before_any_work(base: str) -> None:
    text = " ".join(["word"] * 40_000)  # 200,000 characters: ~50,000 tokens, the limit is 512
    started = time.perf_counter()
    with HealthWatch(base) as watch:
        answer = requests.post(base + BGE_LARGE, json={"text": [text] * 100}, headers=AUTH, timeout=120)
    took = time.perf_counter() - started
    assert answer.status_code == 400, answer.text[:300]
    error = answer.json()["errors"][0]
    assert error["code"] == 5006 and "at most 512 tokens per input" in error["message"], error
    # Before the limit this call took 13.5 s and /health waited as long.
    assert took < 10 and watch.worst < 2.0, (took, watch.worst)


def test_texts_at_the_limit_are_embedded(base: str) -> None:
    text = "abcd" * 512  # exactly 512 tokens by the emulator's rule
    answer = requests.post(base + BGE_LARGE, json={"text": [text] * 100}, headers=AUTH, timeout=120)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["result"]["shape"] == [100, 1024]
    over = requests.post(base + BGE_LARGE, json={"text": ["x", text + "a"]}, headers=AUTH, timeout=60)
    assert over.status_code == 400 and "'/text/1'" in over.json()["errors"][0]["message"]


def test_truncate_inputs_cuts_instead_of_refusing(base: str) -> None:
    m3 = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/baai/bge-m3"
    long_text = "word " * 60_000  # 75,000 tokens, bge-m3's context window is 60,000
    refused = requests.post(base + m3, json={"text": [long_text]}, headers=AUTH, timeout=60)
    assert refused.status_code == 400, refused.text[:300]
    cut = requests.post(base + m3, json={"text": [long_text], "truncate_inputs": True}, headers=AUTH,
                        timeout=60)
    assert cut.status_code == 200, cut.text[:300]


def test_a_catastrophic_prompt_pattern_matches_in_linear_time(base: str) -> None:
    stub = {"model": "@cf/meta/llama-3.1-8b-instruct", "prompt": "(a+)+$", "text": "matched"}
    added = requests.post(base + "/__emulator__/stubs", json=stub, timeout=30)
    assert added.status_code == 201, added.text
    try:
        with HealthWatch(base) as watch:
            started = time.perf_counter()
            # Backtracking engines take ~2^40 steps here; RE2 a few microseconds.
            answer = requests.post(base + LLAMA, json={"prompt": "a" * 40 + "!"}, headers=AUTH, timeout=30)
            took = time.perf_counter() - started
        assert answer.status_code == 200 and answer.json()["result"]["response"] != "matched"
        hit = requests.post(base + LLAMA, json={"prompt": "a" * 40}, headers=AUTH, timeout=30)
        assert hit.json()["result"]["response"] == "matched"
        assert took < 5 and watch.worst < 2.0, (took, watch.worst)
    finally:
        requests.delete(base + "/__emulator__/stubs", timeout=30)


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)b", r"(?<!x)y", "a" * 3000],
                         ids=["backreference", "lookahead", "lookbehind", "3000-chars"])
def test_patterns_re2_cannot_take_are_refused_when_added(base: str, pattern: str) -> None:
    added = requests.post(base + "/__emulator__/stubs", json={"prompt": pattern, "text": "x"}, timeout=30)
    assert added.status_code == 400, added.text
    assert "`prompt`" in added.json()["error"]
