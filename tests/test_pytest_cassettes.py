"""The pytest plugin's cassettes as a user meets them: recorded beside the tests against a real local
stand-in for Cloudflare, replayed on the next plain `pytest` run with the stand-in gone."""

from __future__ import annotations

import asyncio
import json

import pytest

from emulator.cassettes.format import Cassette, Interaction, RecordedRequest, RecordedResponse
from emulator.cassettes.store import CassetteStore
from emulator.pytest_plugin import ACCOUNT_ID
from tests.fake_upstream import LLAMA, REAL_ACCOUNT, REAL_TOKEN, FakeUpstream

pytest_plugins = ["pytester"]

CALLS = f"""
    import pytest

    def ask(workers_ai, prompt):
        return workers_ai.cloudflare.ai.run("{LLAMA}", account_id=workers_ai.account_id, prompt=prompt)

    def test_one(workers_ai):
        assert "How can I assist" in ask(workers_ai, "one")["response"]

    def test_two(workers_ai):
        assert "How can I assist" in ask(workers_ai, "two")["response"]

    @pytest.mark.workers_ai(cassette="shared")
    def test_shared_a(workers_ai):
        assert "How can I assist" in ask(workers_ai, "a")["response"]

    @pytest.mark.workers_ai(cassette="shared")
    def test_shared_b(workers_ai):
        assert "How can I assist" in ask(workers_ai, "b")["response"]

    def test_without_cassette_gets_fakes(workers_ai):
        assert "How can I assist" not in ask(workers_ai, "fake")["response"]
"""


@pytest.fixture(autouse=True)
def _user_project_config(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")



def _real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", REAL_TOKEN)
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", REAL_ACCOUNT)


@pytest.mark.timeout(600)  # two pytest processes: their start-up alone is slow on a busy machine
async def test_recorded_beside_the_tests_then_replayed_offline(
    pytester: pytest.Pytester, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_app=CALLS)
    _real_credentials(monkeypatch)
    # new_episodes: the shared cassette gets both tests' calls. The fake-model test stays out of the
    # recording run (recording would give it a cassette).
    first = await asyncio.to_thread(
        pytester.runpytest_subprocess,
        "-p",
        "no:cacheprovider",
        "--workers-ai-record-mode",
        "new_episodes",
        "--workers-ai-upstream",
        upstream.base,
        "-k",
        "not fakes",
        "test_app.py",
    )
    first.assert_outcomes(passed=4, deselected=1)
    out = first.stdout.str()
    assert f"real calls go to {upstream.base} as account {REAL_ACCOUNT}" in out
    assert REAL_TOKEN not in out
    first.stdout.fnmatch_lines(
        [
            "*Workers AI cassettes recorded*",
            "*2 interaction(s)  cassettes/test_app/shared.json",
            "*1 interaction(s)  cassettes/test_app/test_one.json",
            "3 cassette(s) written*",
        ]
    )
    cassettes = pytester.path / "cassettes" / "test_app"
    assert sorted(p.name for p in cassettes.glob("*.json")) == [
        "shared.json",
        "test_one.json",
        "test_two.json",
    ]
    assert REAL_TOKEN not in (cassettes / "test_one.json").read_text()
    assert len(upstream.requests) == 4

    await upstream.stop()  # the next run has no Cloudflare at all
    second = await asyncio.to_thread(pytester.runpytest_subprocess, "-p", "no:cacheprovider")
    second.assert_outcomes(passed=5)
    assert "cassettes recorded" not in second.stdout.str()


def test_record_flag_does_not_swallow_the_test_path(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a():\n    assert False\n", test_b="def test_b():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--workers-ai-record", "test_b.py")
    result.assert_outcomes(passed=1)


def test_replay_misses_name_pytest_options(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "cassettes" / "test_miss"
    request = RecordedRequest.build(
        "POST",
        f"/client/v4/accounts/{ACCOUNT_ID}/ai/run/{LLAMA}",
        {},
        [("content-type", "application/json")],
        b'{"prompt": "old", "seed": 1}',
    )
    envelope = {"result": {"response": "recorded"}, "success": True, "errors": [], "messages": []}
    body = json.dumps(envelope).encode()
    response = RecordedResponse.build(200, [("content-type", "application/json")], body)
    interaction = Interaction(request=request, response=response)
    CassetteStore(folder).save(Cassette(name="test_changed", interactions=[interaction]))
    pytester.makepyfile(
        test_miss=f"""
        import cloudflare, pytest

        def run(workers_ai, **body):
            return workers_ai.cloudflare.ai.run("{LLAMA}", account_id=workers_ai.account_id, **body)

        def test_changed(workers_ai):
            with pytest.raises(cloudflare.NotFoundError) as info:
                run(workers_ai, prompt="new", seed=1)
            message = info.value.body["errors"][0]["message"]
            assert "pytest --workers-ai-record-mode=all" in message
            assert "--workers-ai-ignore-field NAME" in message and "serve" not in message

        @pytest.mark.workers_ai(cassette="test_changed", ignore_fields=["seed"])
        def test_ignored_field_matches(workers_ai):
            assert run(workers_ai, prompt="old", seed=99)["response"] == "recorded"

        @pytest.mark.workers_ai(cassette="never-recorded", record_mode="none")
        def test_missing_cassette(workers_ai):
            with pytest.raises(cloudflare.NotFoundError) as info:
                run(workers_ai, prompt="x")
            assert "pytest --workers-ai-record-mode=once" in info.value.body["errors"][0]["message"]
    """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_recording_without_credentials_fails_clearly(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    monkeypatch.delenv("CLOUDFLARE_ACCOUNT_ID", raising=False)
    pytester.makepyfile("def test_x(workers_ai):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--workers-ai-record-mode", "all")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "WARNING: CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID not set" in out
    assert (
        "record mode calls the real API (https://api.cloudflare.com), which needs CLOUDFLARE_API_TOKEN" in out
    )


def test_sdk_client_without_its_package_fails_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import sys

        def test_openai_missing(workers_ai, monkeypatch):
            monkeypatch.setitem(sys.modules, "openai", None)
            workers_ai.openai
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "workers_ai.openai needs the `openai` package: pip install openai" in result.stdout.str()
