"""The pytest plugin as a user meets it: pytester runs test files that only use the `workers_ai` fixture."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

LLAMA = "@cf/meta/llama-3-8b-instruct"


@pytest.fixture(autouse=True)
def _user_project_config(pytester: pytest.Pytester) -> None:
    # A real project configures pytest-asyncio; without it every inner run warns about the loop scope.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def test_fixture_gives_working_clients_and_stubs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        def test_native_and_openai(workers_ai):
            workers_ai.stub(model="@cf/meta/*", text="Hi from the stub")
            out = workers_ai.cloudflare.ai.run("{LLAMA}", account_id=workers_ai.account_id, prompt="hello")
            assert out["response"] == "Hi from the stub"
            reply = workers_ai.openai.chat.completions.create(
                model="{LLAMA}", messages=[{{"role": "user", "content": "hello"}}])
            assert reply.choices[0].message.content == "Hi from the stub"
            assert [r["surface"] for r in workers_ai.requests] == ["native", "chat"]
            assert workers_ai.usage["requests"] == 2
            assert workers_ai.openai_base_url.endswith("/accounts/" + workers_ai.account_id + "/ai/v1")

        def test_reset_between_tests(workers_ai):
            assert workers_ai.requests == []
            reply = workers_ai.openai.chat.completions.create(
                model="{LLAMA}", messages=[{{"role": "user", "content": "hello"}}])
            assert reply.choices[0].message.content != "Hi from the stub"
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_faults_from_a_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import openai
        import pytest

        def test_capacity_then_recovery(workers_ai):
            workers_ai.fault("capacity", model="{LLAMA}", nth=1)
            messages = [{{"role": "user", "content": "hi"}}]
            with pytest.raises(openai.RateLimitError) as info:
                workers_ai.openai.chat.completions.create(model="{LLAMA}", messages=messages)
            assert info.value.status_code == 429
            assert workers_ai.openai.chat.completions.create(model="{LLAMA}", messages=messages).choices

        def test_cut_stream(workers_ai):
            workers_ai.fault("cut_stream", after_events=2)
            stream = workers_ai.openai.chat.completions.create(
                model="{LLAMA}", messages=[{{"role": "user", "content": "hi"}}], stream=True)
            # Depending on where the cut lands, the SDK raises its APIConnectionError or lets the
            # transport's RemoteProtocolError through mid-iteration: either way, a dropped connection.
            with pytest.raises(Exception) as info:
                list(stream)
            assert type(info.value).__name__ in ("APIConnectionError", "RemoteProtocolError")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_report_and_budget_gate(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import pytest

        def test_expensive(workers_ai):
            for i in range(3):
                workers_ai.openai.chat.completions.create(
                    model="{LLAMA}", messages=[{{"role": "user", "content": "essay " * 200}}], max_tokens=400)

        def test_cheap(workers_ai):
            workers_ai.openai.embeddings.create(model="@cf/baai/bge-small-en-v1.5", input="hi")

        @pytest.mark.workers_ai(budget=0.0001)
        def test_marker_budget(workers_ai):
            workers_ai.openai.embeddings.create(model="@cf/baai/bge-small-en-v1.5", input="hello there")

        def test_not_using_the_emulator():
            pass
    """)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--workers-ai-budget", "5", "--workers-ai-report", "5"
    )
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*Workers AI budget exceeded: this test spent * neurons ($*) in 3 request(s);"
            " budget 5.00 neurons*",
            "*Workers AI cost (emulated neurons, $0.011 per 1,000)*",
            "*neurons*dollars*test*",
            "*test_report_and_budget_gate.py::test_expensive*",
            "*neurons*dollars*model*",
            f"*{LLAMA}*",
            "total: * neurons = $* over 3 test(s)",
        ]
    )
    assert "budget 0.00 neurons" in result.stdout.str()  # the marker's own budget
    assert "test_not_using_the_emulator" not in result.stdout.str().split("Workers AI cost")[1]


def test_marker_daily_neurons_makes_4006_appear(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import cloudflare
        import pytest

        @pytest.mark.workers_ai(daily_neurons=1)
        def test_wall(workers_ai):
            with pytest.raises(cloudflare.RateLimitError) as info:
                for _ in range(10):
                    workers_ai.cloudflare.ai.run("{LLAMA}", account_id=workers_ai.account_id,
                                                 prompt="words " * 100)
            assert info.value.body["errors"][0]["code"] == 4006

        def test_session_server_is_untouched(workers_ai):
            assert workers_ai.usage["daily_neurons"] == 10000
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_clock_and_unknown_marker_argument(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        def test_clock(workers_ai):
            assert workers_ai.set_clock("2026-02-03T04:05:06Z")["now"].startswith("2026-02-03T04:05:06")
            assert workers_ai.usage["day"] == "2026-02-03"

        @pytest.mark.workers_ai(colour="blue")
        def test_typo(workers_ai):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    assert "@pytest.mark.workers_ai got unknown argument(s) ['colour']" in result.stdout.str()


def test_entry_point_loads_by_name_in_a_fresh_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("""
        def test_health(workers_ai):
            assert workers_ai.control.health()["status"] == "ok"
    """)
    # Without autoloading, only the `pytest11` entry point named on the command line can bring it in.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess(
        "-p", "workers_ai", "-p", "no:cacheprovider", "--workers-ai-report", "0"
    )
    result.assert_outcomes(passed=1)
    assert "Workers AI cost" not in result.stdout.str()


def test_the_plugin_loads_without_the_server_stack() -> None:
    """Every pytest run of a project with the package installed loads the plugin; the server stack
    (aiohttp's server and client, ~0.65 s of imports) waits for a test that asks for the emulator."""
    stack = ("aiohttp", "emulator.launch.background", "emulator.server")
    code = f"import sys, emulator.pytest_plugin; print(sorted(m for m in {stack!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_a_project_that_turns_warnings_into_errors_passes_and_sees_no_aiohttp_key_warning(
    pytester: pytest.Pytester,
) -> None:
    """aiohttp 3.14 warns (NotAppKeyWarning) on string keys in app, request and response storage; the
    server runs in the test's process, so such a warning would land in the user's warnings summary, and
    under `filterwarnings = error` turn each call into a 500. A fresh process, because aiohttp warns
    once per key per process."""
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings =\n    error\n"
    )
    pytester.makepyfile(f"""
        import json
        import urllib.request

        def post(url, body, headers):
            request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
            with urllib.request.urlopen(request) as response:
                return response.status, response.read()

        def get(url, token):
            request = urllib.request.Request(url, headers={{"Authorization": "Bearer " + token}})
            with urllib.request.urlopen(request) as response:
                return response.status, response.read()

        def test_every_surface(workers_ai):
            auth = {{"Authorization": "Bearer " + workers_ai.token, "Content-Type": "application/json"}}
            url = workers_ai.run_base_url + "/{LLAMA}"
            for _ in range(2):  # the second answer comes from the answer cache
                assert post(url, {{"prompt": "hi"}}, auth)[0] == 200
            status, body = post(url, {{"prompt": "hi", "stream": True}}, auth)
            assert status == 200 and body.endswith(b"data: [DONE]\\n\\n")
            reply = workers_ai.openai.chat.completions.create(
                model="{LLAMA}", messages=[{{"role": "user", "content": "hello"}}])
            assert reply.choices[0].message.content
            binding = {{"MF-Binding": "AI", "MF-URL": "https://workers-binding.ai/run?version=3",
                        "MF-Header-content-type": "application/json",
                        "MF-Header-cf-consn-model-id": "{LLAMA}"}}
            status, body = post(workers_ai.base_url + "/", {{"inputs": {{"prompt": "hi"}}, "options": {{}}}},
                                binding)
            assert status == 200 and json.loads(body)["response"]
            workers_ai.stub(model="{LLAMA}", text="stubbed")
            workers_ai.fault("capacity", model="@cf/baai/bge-base-en-v1.5", nth=1)
            assert len(workers_ai.requests) == 5 and workers_ai.usage["requests"] == 5
            assert get(workers_ai.base_url + "/__emulator__/", workers_ai.token)[0] == 200
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "default")
    result.assert_outcomes(passed=1)
    assert "NotAppKeyWarning" not in result.stdout.str()
    assert "warnings summary" not in result.stdout.str()
