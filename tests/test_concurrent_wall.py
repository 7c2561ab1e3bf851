"""Concurrent calls at the free plan's daily wall, over real HTTP: by default (quirk
`daily-limit-concurrent-calls-cross` on) every admitted call completes and the day may pass the
allowance by what was in flight; strict (quirk off) at most one call crosses."""

from __future__ import annotations

import asyncio

import orjson

from tests.conftest import AUTH, Emulator, ServerFactory

LLAMA = "@cf/meta/llama-3.1-8b-instruct"
ALLOWANCE = 200.0
CALLS = 300


async def burst(emu: Emulator) -> tuple[list[float], list[int]]:
    """Fire every call at once; the neurons of each 200 and the error code of each refusal."""
    async def one(i: int) -> tuple[int, float, int | None]:
        body = {"prompt": f"question {i} " + "word " * 200, "max_tokens": 256}
        async with emu.session.post(emu.run_url(LLAMA), json=body, headers=AUTH) as resp:
            raw = await resp.read()
            if resp.status == 200:
                return 200, float(resp.headers["cf-ai-neurons"]), None
            return resp.status, 0.0, orjson.loads(raw)["errors"][0]["code"]

    results = await asyncio.gather(*(one(i) for i in range(CALLS)))
    return [n for s, n, _ in results if s == 200], [c for s, _, c in results if s != 200 and c is not None]


async def test_by_default_in_flight_calls_all_complete_past_the_wall(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(plan="free", daily_neurons=ALLOWANCE)
    charged, refused = await burst(emu)
    total = emu.state.ledger.day_total(emu.account)
    assert set(refused) <= {4006}
    assert total == sum(charged)  # every answered call is charged, and only those
    # More than one call crossed: the overshoot is bounded only by the calls in flight.
    assert total > ALLOWANCE + max(charged), (total, len(charged))
    after = await emu.session.post(emu.run_url(LLAMA), json={"prompt": "later"}, headers=AUTH)
    assert after.status == 429 and (await after.json())["errors"][0]["code"] == 4006


async def test_strict_setting_lets_at_most_one_call_cross(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(plan="free", daily_neurons=ALLOWANCE,
                              quirks={"daily-limit-concurrent-calls-cross": False})
    charged, refused = await burst(emu)
    total = emu.state.ledger.day_total(emu.account)
    assert total == sum(charged)
    assert ALLOWANCE <= total <= ALLOWANCE + max(charged), (total, len(charged))
    assert refused and set(refused) == {4006}
    usage = emu.state.ledger.usage(account=emu.account)
    assert usage.requests == len(charged)
