"""Small frictions a new user met: a stub for a model that does not exist, a cost option that does not
apply, float noise in dollars."""

from __future__ import annotations

from click.testing import CliRunner

from emulator.accounting.pricing import dollars
from emulator.cli import main as cli
from tests.conftest import AUTH, Emulator


async def test_stub_for_an_unknown_model_is_refused_naming_the_closest(emulator: Emulator) -> None:
    url = f"{emulator.base}/__emulator__/stubs"
    typo = await emulator.session.post(
        url, json={"model": "@cf/meta/llama-3-8b-instruc", "text": "x"}, headers=AUTH
    )
    assert typo.status == 400
    message = await typo.text()
    assert "never answer" in message and "@cf/meta/llama-3-8b-instruct" in message
    glob = await emulator.session.post(url, json={"model": "@cf/acme/*", "text": "x"}, headers=AUTH)
    assert glob.status == 201  # a pattern is taken as written
    exact = await emulator.session.post(
        url, json={"model": "@cf/meta/llama-3-8b-instruct", "text": "x"}, headers=AUTH
    )
    assert exact.status == 201


def test_cost_refuses_an_option_the_model_is_not_priced_by() -> None:
    out = CliRunner().invoke(cli, ["cost", "@cf/meta/llama-3-8b-instruct", "--audio-seconds", "30"])
    assert out.exit_code == 2
    assert (
        "priced by tokens (--input-tokens, --output-tokens): --audio-seconds does not change its price"
        in out.output
    )
    cached = CliRunner().invoke(
        cli, ["cost", "@cf/meta/llama-3-8b-instruct", "--input-tokens", "10", "--cached-input-tokens", "5"]
    )
    assert cached.exit_code == 0, cached.output
    unknown = CliRunner().invoke(cli, ["cost", "@cf/nope/nothing"])
    assert "docs/costs.md" not in unknown.output and "cost-table --prices" in unknown.output


async def test_usage_dollars_have_no_float_noise(emulator: Emulator) -> None:
    assert dollars(8.8) == 9.68e-05
    for i in range(3):
        await emulator.run("@cf/meta/llama-3-8b-instruct", {"prompt": f"q {i}"})
    usage = await (await emulator.session.get(f"{emulator.base}/__emulator__/usage", headers=AUTH)).json()
    for value in [usage["dollars"], *(m["dollars"] for m in usage["models"])]:
        assert len(repr(value).split("e")[0]) <= 14, value
