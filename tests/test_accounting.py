"""Neuron accounting over real HTTP: per-call cost, the free-plan wall, plans, rollover, persistence."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from emulator.accounting.ledger import FixedClock
from emulator.accounting.pricing import round_neurons
from emulator.cli import main as cli
from tests.conftest import ACCOUNT, AUTH, Emulator, ServerFactory, wav_bytes
from tests.serving import serve

LLAMA = "@cf/meta/llama-3-8b-instruct"
WALL_TEXT = ("AiError: AiError: you have used up your daily free allocation of 10,000 neurons, please "
             "upgrade to Cloudflare's Workers Paid plan if you would like to continue usage. ({})")
CAPACITY = "Capacity temporarily exceeded, please try again."
KIMI = "@cf/moonshotai/kimi-k2.6"
CHAT = {"messages": [{"role": "user", "content": "hello"}]}


def last_charge(emu: Emulator) -> float:
    return emu.state.ledger.call_rows(ACCOUNT)[-1][2]


def ledger_total(emu: Emulator) -> float:
    return emu.state.ledger.day_total(ACCOUNT)


@pytest.mark.parametrize(("model", "body"), [
    (LLAMA, {"prompt": "Where did the phrase Hello World come from"}),
    (LLAMA, {"prompt": "Tell me a story", "stream": True}),
    ("@cf/baai/bge-base-en-v1.5", {"text": ["one sentence here", "and a second, longer sentence to embed"]}),
    ("@cf/black-forest-labs/flux-1-schnell", {"prompt": "a lighthouse at dusk", "steps": 4}),
    ("@cf/stabilityai/stable-diffusion-xl-base-1.0", {"prompt": "a cat"}),
    ("@cf/meta/m2m100-1.2b", {"text": "Hello, how are you?", "source_lang": "en", "target_lang": "fr"}),
])
async def test_header_equals_ledger_entry(emulator: Emulator, model: str, body: dict) -> None:
    resp = await emulator.run(model, body)
    assert resp.status == 200, await resp.text()
    await resp.read()
    header = resp.headers["cf-ai-neurons"]
    # SDXL has no price (a formerly free beta model; a real sd-v1-5 call showed "0.00").
    assert float(header) > 0 or "stable-diffusion" in model
    assert round_neurons(last_charge(emulator)) == header
    assert last_charge(emulator) == float(header)  # the ledger records exactly the header's figure


async def test_whisper_header_equals_ledger_entry_and_scales_with_audio(emulator: Emulator) -> None:
    short = await emulator.run("@cf/openai/whisper", data=wav_bytes(3.0))
    assert short.status == 200, await short.text()
    assert last_charge(emulator) == float(short.headers["cf-ai-neurons"])
    long = await emulator.run("@cf/openai/whisper", data=wav_bytes(12.0))
    assert long.status == 200
    assert last_charge(emulator) == float(long.headers["cf-ai-neurons"])
    assert float(long.headers["cf-ai-neurons"]) > float(short.headers["cf-ai-neurons"])
    # whisper: 41.14 neurons per audio minute (reference §7.1)
    assert float(long.headers["cf-ai-neurons"]) == pytest.approx(12 / 60 * 41.14, abs=0.011)


async def test_models_that_report_cost_in_the_body(emulator: Emulator) -> None:
    m3 = await emulator.run("@cf/baai/bge-m3", {"text": ["decision: use hairlines not boxes",
                                                           "decision: one accent colour"]})
    body = await m3.json()
    meta = body["result"]["meta"]
    assert meta["cost_metric_name_1"] == "input_tokens"
    assert meta["neurons"] == pytest.approx(meta["cost_metric_value_1"] * 1075 / 1e6)
    assert round_neurons(meta["neurons"]) == m3.headers["cf-ai-neurons"]
    assert emulator.state.catalog.get("@cf/baai/bge-m3").output_validator.is_valid(body["result"])

    small = await emulator.run("@cf/meta/llama-3.2-3b-instruct", {"prompt": "hi"})
    usage = (await small.json())["result"]["usage"]
    assert usage["neurons"] == pytest.approx(
        (usage["prompt_tokens"] * 4625 + usage["completion_tokens"] * 30475) / 1e6)
    assert round_neurons(usage["neurons"]) == small.headers["cf-ai-neurons"]

    plain = await emulator.run(LLAMA, {"prompt": "hi"})  # older models keep the plain usage object
    assert "neurons" not in (await plain.json())["result"]["usage"]


async def test_free_wall_hits_at_exactly_the_right_call(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(daily_neurons=3.0)
    spent = 0.0
    for i in range(200):
        resp = await emu.run(LLAMA, {"prompt": f"question number {i}"})
        if spent >= 3.0:  # the allowance was used up before this call: Cloudflare refuses it
            assert resp.status == 429
            break
        assert resp.status == 200, f"call {i} refused at {spent} neurons"
        spent += float(resp.headers["cf-ai-neurons"])
    else:
        pytest.fail("the wall never came")
    body = await resp.json()
    assert list(body) == ["errors", "success", "result", "messages"]
    assert body["errors"] == [{"message": WALL_TEXT.format(resp.headers["cf-ai-req-id"]), "code": 4006}]
    assert body["success"] is False and body["result"] == {}
    assert ledger_total(emu) == pytest.approx(spent)
    # The refusal costs nothing and is counted; a second refusal too.
    again = await emu.run("@cf/baai/bge-base-en-v1.5", {"text": "x"})
    assert again.status == 429 and "cf-ai-neurons" not in again.headers
    report = emu.state.ledger.usage(account=ACCOUNT)
    assert report.refused == 2 and report.free_allowance_left == 0
    assert {m.model: m.refusals for m in report.models if m.refused} == {
        LLAMA: {"4006": 1}, "@cf/baai/bge-base-en-v1.5": {"4006": 1}}


async def test_wall_is_the_same_on_gateway_and_v1_paths(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(daily_neurons=0.5)
    first = await emu.run(LLAMA, {"prompt": "spend it all"})
    assert first.status == 200
    gateway = f"{emu.base}/v1/{ACCOUNT}/my-gateway/workers-ai/{LLAMA}"
    v1 = f"{emu.ai}/v1/chat/completions"
    for url, body in [(emu.run_url(LLAMA), {"prompt": "again"}), (gateway, {"prompt": "again"}),
                      (v1, {"model": LLAMA, "messages": [{"role": "user", "content": "again"}]})]:
        resp = await emu.session.post(url, json=body, headers=AUTH)
        assert resp.status == 429, (url, await resp.text())
        payload = await resp.json()
        assert payload["errors"][0] == {"message": WALL_TEXT.format(resp.headers["cf-ai-req-id"]),
                                        "code": 4006}, url


async def test_day_rolls_over_at_midnight_utc(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(daily_neurons=0.5)
    clock = FixedClock(datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC))
    emu.state.clock = clock
    assert (await emu.run(LLAMA, {"prompt": "late"})).status == 200
    assert (await emu.run(LLAMA, {"prompt": "later"})).status == 429
    clock.advance(timedelta(seconds=29))  # 23:59:59 — still the same UTC day
    assert (await emu.run(LLAMA, {"prompt": "still"})).status == 429
    clock.advance(timedelta(seconds=1))  # 00:00:00 UTC
    fresh = await emu.run(LLAMA, {"prompt": "new day"})
    assert fresh.status == 200
    ledger = emu.state.ledger
    old = ledger.usage(account=ACCOUNT, day=datetime(2026, 3, 1).date())
    new = ledger.usage(account=ACCOUNT)
    assert new.day.isoformat() == "2026-03-02" and new.requests == 1 and new.refused == 0
    assert old.requests == 1 and old.refused == 2
    assert new.resets_at == datetime(2026, 3, 3, tzinfo=UTC)


async def test_paid_plan_never_refuses_and_bills_overage(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(plan="paid", daily_neurons=1.0)
    headers = []
    for i in range(6):
        resp = await emu.run(LLAMA if i % 2 else "@cf/meta/m2m100-1.2b",
                             {"prompt": f"p{i}"} if i % 2 else {"text": f"t{i}", "target_lang": "de"})
        assert resp.status == 200
        headers.append(float(resp.headers["cf-ai-neurons"]))
    report = emu.state.ledger.usage(account=ACCOUNT)
    assert report.plan.value == "paid" and report.refused == 0
    assert report.neurons == pytest.approx(sum(headers))
    assert report.overage_neurons == pytest.approx(sum(headers) - 1.0)
    assert report.overage_dollars == pytest.approx((sum(headers) - 1.0) * 0.011 / 1000)
    assert sum(m.overage_neurons for m in report.models) == pytest.approx(report.overage_neurons)


async def test_paid_only_model_is_5035_on_free_and_runs_on_paid(make_emulator: ServerFactory) -> None:
    free = await make_emulator()
    resp = await free.run(KIMI, CHAT)
    assert resp.status == 403
    body = await resp.json()
    assert body["errors"] == [{"message": "This model requires a Workers Paid plan. See pricing for details.",
                               "code": 5035}]
    assert "cf-ai-neurons" not in resp.headers and "cf-ai-req-id" in resp.headers
    assert free.state.ledger.usage().models[0].refusals == {"5035": 1}
    paid = await make_emulator(plan="paid")
    ok = await paid.run(KIMI, CHAT)
    assert ok.status == 200 and float(ok.headers["cf-ai-neurons"]) > 0


async def test_rate_limit_3040_and_the_window_slides_with_the_clock(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(plan="paid", rate_limits=True)
    clock = FixedClock(datetime(2026, 5, 5, 12, 0, tzinfo=UTC))
    emu.state.clock = clock
    for i in range(20):  # kimi-k2.6: 20 requests per minute (reference §8)
        assert (await emu.run(KIMI, {"messages": [{"role": "user", "content": f"m{i}"}]})).status == 200
    refused = await emu.run(KIMI, CHAT)
    assert refused.status == 429
    assert (await refused.json())["errors"] == [{"message": CAPACITY, "code": 3040}]
    assert (await emu.run(LLAMA, {"prompt": "other model, own budget"})).status == 200
    clock.advance(timedelta(seconds=61))
    assert (await emu.run(KIMI, CHAT)).status == 200


async def test_64_parallel_clients_ledger_equals_sum_of_headers(emulator: Emulator) -> None:
    models = [(LLAMA, lambda i: {"prompt": f"parallel question {i}"}),
              ("@cf/baai/bge-small-en-v1.5", lambda i: {"text": f"parallel text {i} " * (i % 7 + 1)}),
              (LLAMA, lambda i: {"prompt": f"stream {i}", "stream": True})]

    async def one(i: int) -> float:
        async with aiohttp.ClientSession() as session:  # 64 separate clients, 64 connections
            model, body = models[i % len(models)]
            resp = await session.post(emulator.run_url(model), json=body(i), headers=AUTH)
            await resp.read()
            assert resp.status == 200
            return float(resp.headers["cf-ai-neurons"])

    headers = await asyncio.gather(*(one(i) for i in range(64)))
    rows = emulator.state.ledger.call_rows(ACCOUNT)
    assert len(rows) == 64
    assert round(sum(r[2] for r in rows), 2) == round(sum(headers), 2)
    assert sorted(r[2] for r in rows) == sorted(headers)
    assert emulator.state.ledger.usage().requests == 64


def _post(base: str, model: str, body: dict) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{model}",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={**AUTH, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
        return resp.status, dict(resp.headers)


def _usage_json(data_dir: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["usage", "--data-dir", str(data_dir), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_usage_survives_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve("--plan", "paid", "--daily-neurons", "1", data_dir=data) as (base, _):
        first = [float(_post(base, LLAMA, {"prompt": f"before {i}"})[1]["cf-ai-neurons"]) for i in range(3)]
    with serve(data_dir=data) as (base, _):
        after = _usage_json(data)
        assert after["requests"] == 3 and after["neurons"] == pytest.approx(sum(first))
        more = float(_post(base, LLAMA, {"prompt": "after restart"})[1]["cf-ai-neurons"])
        running = _usage_json(data)  # read while the server is up (WAL reader)
        assert running["requests"] == 4 and running["neurons"] == pytest.approx(sum(first) + more)
        assert running["plan"] == "free"  # the new server's plan is the one recorded


def test_kill_9_loses_none_of_the_answered_charges(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve(data_dir=data) as (base, proc):
        answers = [_post(base, "@cf/baai/bge-base-en-v1.5", {"text": f"chunk {i} " * 20}) for i in range(25)]
        headers = [float(h["cf-ai-neurons"]) for _, h in answers]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # The charges wait in the dead server's journal; the next reader (here `usage`) applies it.
    assert list(data.glob("ledger.sqlite3.journal-*"))
    assert _usage_json(data)["requests"] == 25
    assert not list(data.glob("ledger.sqlite3.journal-*"))
    with sqlite3.connect(data / "ledger.sqlite3") as conn:
        count, total = conn.execute("SELECT COUNT(*), SUM(neurons) FROM calls").fetchone()
    assert count == 25
    assert round(total, 2) == round(sum(headers), 2)
    assert _usage_json(data)["requests"] == 25  # applied once, not twice


async def test_usage_command_table_and_json(make_emulator: ServerFactory, tmp_path: Path) -> None:
    emu = await make_emulator(data_dir=tmp_path / "d", daily_neurons=2.0)
    emu.state.clock = FixedClock(datetime(2026, 4, 1, 10, 0, tzinfo=UTC))
    spent = 0.0
    while True:
        resp = await emu.run(LLAMA, {"prompt": f"q{spent}"})
        if resp.status == 429:
            break
        spent += float(resp.headers["cf-ai-neurons"])
    await emu.run("@cf/baai/bge-base-en-v1.5", {"text": "x"})
    await emu.run("@cf/openai/whisper-tiny-en", data=wav_bytes(1.0))
    runner = CliRunner()
    out = runner.invoke(cli, ["usage", "--data-dir", str(tmp_path / "d"), "--day", "2026-04-01"])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "2026-04-01" in text and "free plan" in text and "2.00 free neurons" in text
    llama_line = next(line for line in text.splitlines() if line.startswith(LLAMA))
    assert f"{spent:,.2f}" in llama_line and "1×4006" in llama_line and "listed" in llama_line
    assert "1×4006" in next(line for line in text.splitlines() if line.startswith("@cf/baai/bge-base"))
    assert "free allowance left: 0.00 neurons (resets 2026-04-02 00:00 UTC)" in text
    data = _usage_json(tmp_path / "d", "--day", "2026-04-01", "--account", ACCOUNT)
    assert data["account"] == ACCOUNT and data["refused"] == 3 and data["neurons"] == pytest.approx(spent)
    assert data["daily_neurons"] == 2.0 and data["plan"] == "free"
    paid_view = _usage_json(tmp_path / "d", "--day", "2026-04-01", "--plan", "paid")
    assert paid_view["overage_neurons"] == pytest.approx(spent - 2.0)
    missing = runner.invoke(cli, ["usage", "--data-dir", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no ledger" in missing.output


async def test_graphql_ai_inference_adaptive_groups(emulator: Emulator) -> None:
    emulator.state.clock = clock = FixedClock(datetime(2026, 6, 1, 8, 0, tzinfo=UTC))
    spent: dict[str, float] = {}
    for model, body in [(LLAMA, {"prompt": "a"}), (LLAMA, {"prompt": "b"}),
                        ("@cf/baai/bge-base-en-v1.5", {"text": "c"})]:
        resp = await emulator.run(model, body)
        spent[model] = spent.get(model, 0.0) + float(resp.headers["cf-ai-neurons"])
    clock.advance(timedelta(days=1))
    await emulator.run(LLAMA, {"prompt": "next day"})
    query = """
      query GetUsage($accountTag: string!, $start: Date, $end: Date) {
        viewer {
          accounts(filter: {accountTag: $accountTag}) {
            ai: aiInferenceAdaptiveGroups(limit: 10, filter: {date_geq: $start, date_leq: $end},
                                          orderBy: [sum_totalNeurons_DESC]) {
              sum { totalNeurons }
              count
              dimensions { modelId }
            }
          }
        }
      }"""
    url = f"{emulator.base}/client/v4/graphql"
    variables = {"accountTag": ACCOUNT, "start": "2026-06-01", "end": "2026-06-01"}
    resp = await emulator.session.post(url, json={"query": query, "variables": variables}, headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["errors"] is None
    groups = body["data"]["viewer"]["accounts"][0]["ai"]
    assert {g["dimensions"]["modelId"]: (g["count"], g["sum"]["totalNeurons"]) for g in groups} == {
        LLAMA: (2, pytest.approx(spent[LLAMA])),
        "@cf/baai/bge-base-en-v1.5": (1, pytest.approx(spent["@cf/baai/bge-base-en-v1.5"]))}
    assert groups[0]["sum"]["totalNeurons"] >= groups[-1]["sum"]["totalNeurons"]

    by_day = ('{ viewer { accounts(filter: {accountTag: "' + ACCOUNT + '"}) { aiInferenceAdaptiveGroups('
              'limit: 5, filter: {date: "2026-06-02"}) { count dimensions { date } } } } }')
    resp = await emulator.session.post(url, json={"query": by_day}, headers=AUTH)
    assert (await resp.json())["data"]["viewer"]["accounts"][0]["aiInferenceAdaptiveGroups"] == [
        {"count": 1, "dimensions": {"date": "2026-06-02"}}]

    unknown = query.replace("  count\n", "  totalCost\n")
    resp = await emulator.session.post(url, json={"query": unknown, "variables": variables}, headers=AUTH)
    assert resp.status == 200
    err = await resp.json()
    assert err["data"] is None and "totalCost" in err["errors"][0]["message"]
    assert err["errors"][0]["path"][-1] == "totalCost" and "timestamp" in err["errors"][0]["extensions"]

    for bad in (b"not json", b'{"variables": {}}'):
        resp = await emulator.session.post(url, data=bad, headers=AUTH)
        assert resp.status == 400 and (await resp.json())["data"] is None
    resp = await emulator.session.post(url, json={"query": "{ viewer { accounts(filter: {}) { x } } "},
                                       headers=AUTH)
    assert resp.status == 200 and (await resp.json())["errors"]
    noauth = await emulator.session.post(url, json={"query": query})
    assert noauth.status in (400, 401, 403)


async def test_graphql_answers_queries_it_cannot_run_with_a_graphql_error(emulator: Emulator) -> None:
    """Syntax errors, other operations, fragments, directives, a body of many tokens and a value
    nested past Python's recursion limit: each an HTTP 200 with `data: null` and one message."""
    url = f"{emulator.base}/client/v4/graphql"
    cases = {
        "{ viewer { accounts(": "syntax error: ",
        "mutation { viewer { x } }": "only queries are supported, not 'mutation'",
        "{ viewer { x } } { viewer { y } }": "only one operation per request is supported",
        "{ viewer { ...Usage } }": "fragments are not supported by the emulator",
        "{ viewer @include(if: true) { x } }": "directives are not supported by the emulator",
        "{ viewer { " + "x " * 6000 + "} }": "syntax error: Document contains more than 5000 tokens",
        "{ viewer(x: " + "[" * 3000 + "]" * 3000 + ") { x } }": "syntax error: ",
    }
    for query, message in cases.items():
        resp = await emulator.session.post(url, json={"query": query}, headers=AUTH)
        assert resp.status == 200, query[:40]
        body = await resp.json()
        assert body["data"] is None and body["errors"][0]["message"].startswith(message), body
