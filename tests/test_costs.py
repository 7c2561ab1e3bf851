"""The cost estimator and the generated cost tables in README.md and docs/costs.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from emulator.accounting.costs import block_in
from emulator.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("path", "name", "flag"), [("README.md", "free-neurons", "--free-neurons"),
                                                     ("docs/costs.md", "prices", "--prices")])
def test_checked_in_tables_are_what_the_command_prints(path: str, name: str, flag: str) -> None:
    printed = CliRunner().invoke(cli, ["cost-table", flag])
    assert printed.exit_code == 0, printed.output
    current = block_in((ROOT / path).read_text(encoding="utf-8"), name)
    fix = f"workers-ai-emulator cost-table {flag} --write {path}"
    assert current == printed.output, f"{path} is stale: run `{fix}`"


def test_readme_table_compares_with_the_guide_rule_of_thumb() -> None:
    table = block_in((ROOT / "README.md").read_text(encoding="utf-8"), "free-neurons") or ""
    for guide in ("100–200", "500", "10,000", "1,500–15,000"):
        assert f"| {guide} |" in table
    assert "1,000 input tokens" in table and "30-second clip" in table


def test_cost_command_llm_and_json() -> None:
    out = CliRunner().invoke(cli, ["cost", "@cf/meta/llama-3-8b-instruct", "--input-tokens", "1000",
                                   "--output-tokens", "300"])
    assert out.exit_code == 0, out.output
    # 1000 × 25608 / 1e6 + 300 × 75147 / 1e6 = 48.1521 neurons
    assert "48.1521" in out.output and "cf-ai-neurons: 48.15" in out.output
    assert "calls per 10,000 neurons  207" in out.output
    data = json.loads(CliRunner().invoke(cli, ["cost", "@cf/openai/whisper", "--audio-seconds", "60",
                                               "--json"]).output)
    assert data["neurons"] == pytest.approx(41.14) and data["calls_per_allowance"] == 243
    assert data["dollars"] == pytest.approx(41.14 * 0.011 / 1000) and data["estimated"] is False


def test_cost_command_images_estimates_and_bad_input() -> None:
    runner = CliRunner()
    flux = json.loads(runner.invoke(cli, ["cost", "@cf/black-forest-labs/flux-1-schnell", "--width", "1024",
                                          "--height", "1024", "--steps", "4", "--json"]).output)
    assert flux["header"] == "57.60"  # 4 tiles × 4.8 + 4 steps × 9.6
    est = runner.invoke(cli, ["cost", "@cf/baai/omni-bge-base-en-v1.5", "--input-tokens", "100"])
    assert est.exit_code == 0 and "ESTIMATED" in est.output
    assert runner.invoke(cli, ["cost", "@cf/nope/nothing"]).exit_code == 2
    assert runner.invoke(cli, ["cost", "@cf/black-forest-labs/flux-1-schnell"]).exit_code == 2
    assert runner.invoke(cli, ["cost", "@cf/openai/whisper", "--audio-seconds", "-1"]).exit_code == 2
