"""Cost estimates from the price book: one call's neurons and dollars; the README and docs/costs.md tables.

The tables are generated (never hand-edited) so they cannot drift from `data/prices.json`:
`workers-ai-emulator cost-table` prints them, `--write FILE` replaces the block between the
markers in a file, and tests/test_costs.py fails when a checked-in copy is stale.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emulator.accounting.pricing import FREE_DAILY_NEURONS, PriceBook, dollars, load_prices, round_neurons
from emulator.call import Usage

TILE = 512 * 512  # the pricing page's image tile (same unit as tasks/text_to_image.py)
MEGAPIXEL = 1024 * 1024

# Which command-line units a price rule reads (for `cost` hints and validation).
RULE_UNITS: dict[str, tuple[str, ...]] = {
    "tokens": ("--input-tokens", "--output-tokens"),
    "embedding_tokens": ("--input-tokens",),
    "images": ("--images",),
    "tiles_steps": ("--width", "--height", "--steps"),
    "flux2_dev": ("--width", "--height", "--steps"),
    "flux2_klein_4b": ("--width", "--height"),
    "megapixels": ("--width", "--height"),
    "audio_minutes": ("--audio-seconds",),
    "characters_per_1k": ("--characters",),
}


@dataclass(frozen=True, slots=True)
class Estimate:
    model: str
    neurons: float  # exact neurons of one call
    header: str  # what `cf-ai-neurons` shows (and the emulator's ledger records) for that call
    dollars: float  # exact neurons x $0.011 / 1,000 (what the call costs beyond the free allowance)
    calls_per_allowance: int | None  # how many such calls fit in the daily free allowance; None = no cost
    estimated: bool  # the model's price is an estimate (no pricing-page row)
    rule: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_usage(width: int, height: int, steps: int = 0) -> Usage:
    """Usage of one generated image, in the units the price rules read."""
    pixels = width * height
    return Usage(output_tiles=math.ceil(pixels / TILE), steps=steps, megapixels=pixels / MEGAPIXEL)


def estimate(model: str, usage: Usage, *, prices: PriceBook | None = None,
             allowance: float = FREE_DAILY_NEURONS) -> Estimate:
    book = prices or load_prices()
    rule = book.rule(model)
    exact = book.neurons(model, usage)
    fits = math.floor(allowance / exact) if exact > 0 else None
    return Estimate(model=model, neurons=exact, header=round_neurons(exact), dollars=dollars(exact),
                    calls_per_allowance=fits, estimated=rule.estimated or not book.has_rule(model),
                    rule=rule.rule, source=rule.source)


# ---------------------------------------------------------------------------------------------
# "What 10,000 free neurons buy" (README)

@dataclass(frozen=True, slots=True)
class Scenario:
    what: str  # the guide's wording
    guide: str  # the guide's rule of thumb for 10,000 neurons
    model: str
    assumption: str
    usage: Usage
    unit: str = "calls"
    per_call_units: float = 1.0  # e.g. seconds of audio per call, to express "500 seconds"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("dialogues", "100–200", "@cf/meta/llama-3-8b-instruct",
             "one chat turn: 1,000 input tokens (system prompt + history) and 300 output tokens",
             Usage(input_tokens=1000, output_tokens=300)),
    Scenario("dialogues", "100–200", "@cf/meta/llama-3.1-8b-instruct-fp8-fast",
             "same turn on the cheapest 8B model", Usage(input_tokens=1000, output_tokens=300)),
    Scenario("dialogues", "100–200", "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
             "same turn on a 70B model", Usage(input_tokens=1000, output_tokens=300)),
    Scenario("translations", "500", "@cf/meta/m2m100-1.2b",
             "one paragraph: 150 tokens in, 150 tokens out", Usage(input_tokens=150, output_tokens=150)),
    Scenario("seconds of speech-to-text", "500", "@cf/openai/whisper",
             "one 30-second clip per call", Usage(audio_seconds=30), unit="seconds", per_call_units=30),
    Scenario("seconds of speech-to-text", "500", "@cf/openai/whisper-large-v3-turbo",
             "one 30-second clip per call", Usage(audio_seconds=30), unit="seconds", per_call_units=30),
    Scenario("text classifications", "10,000", "@cf/huggingface/distilbert-sst-2-int8",
             "one review of 100 tokens", Usage(input_tokens=100)),
    Scenario("embeddings", "1,500–15,000", "@cf/baai/bge-small-en-v1.5",
             "one 250-token chunk per embedding", Usage(input_tokens=250)),
    Scenario("embeddings", "1,500–15,000", "@cf/baai/bge-base-en-v1.5",
             "one 250-token chunk per embedding", Usage(input_tokens=250)),
    Scenario("embeddings", "1,500–15,000", "@cf/baai/bge-large-en-v1.5",
             "one 250-token chunk per embedding", Usage(input_tokens=250)),
    Scenario("images", "—", "@cf/black-forest-labs/flux-1-schnell",
             "one 1024×1024 image, 4 steps", image_usage(1024, 1024, 4)),
)


def _count(n: float) -> str:
    return f"{n:,.0f}"


def free_neurons_table(prices: PriceBook | None = None) -> str:
    """The README table: today's prices against the guide's rule of thumb, per 10,000 neurons."""
    book = prices or load_prices()
    lines = [
        "| 10,000 neurons buy … | guide's rule of thumb | model | assumption per call "
        "| neurons per call | $ per call | today |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for s in SCENARIOS:
        e = estimate(s.model, s.usage, prices=book)
        today = "—" if e.calls_per_allowance is None else _count(e.calls_per_allowance * s.per_call_units)
        marker = " (estimated price)" if e.estimated else ""
        lines.append(f"| {s.what} | {s.guide} | `{s.model}`{marker} | {s.assumption} | {e.neurons:.2f} "
                     f"| ${e.dollars:.6f} | {today} {s.unit if s.unit != 'calls' else ''}".rstrip() + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Price table by model (docs/costs.md)

_RATE_LABELS = {
    "per_m_input": "input / M tokens",
    "per_m_cached_input": "cached input / M tokens",
    "per_m_output": "output / M tokens",
    "per_m_images": "/ M images",
    "per_tile": "/ 512² tile",
    "per_step": "/ step",
    "per_input_tile_step": "/ input tile·step",
    "per_output_tile_step": "/ output tile·step",
    "per_input_tile": "/ input tile",
    "per_output_tile": "/ output tile",
    "first_mp": "first MP",
    "per_additional_mp": "/ further MP",
    "per_input_mp": "/ input MP",
    "per_minute": "/ audio minute",
    "per_1k_characters": "/ 1k characters",
    "per_request": "/ request",
}


def _rate_text(rates: dict[str, float]) -> str:
    parts = []
    for key, value in rates.items():
        shown = f"{value:,.2f}".rstrip("0").rstrip(".")
        parts.append(f"{shown} {_RATE_LABELS.get(key, key)}")
    return "; ".join(parts) or "0"


def price_table(prices: PriceBook | None = None) -> str:
    """Every priced model: its rule, neuron rates, and where the price comes from."""
    book = prices or load_prices()
    lines = ["| model | billed by | neurons | price source |", "|---|---|---|---|"]
    for name in book.models:
        rule = book.rule(name)
        if rule.estimated:
            source = f"**estimate** (from `{rule.estimated_from}`)" if rule.estimated_from else "**estimate**"
        else:
            source = rule.source
        lines.append(f"| `{name}` | {rule.rule} | {_rate_text(dict(rule.rates))} | {source} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Generated blocks in checked-in files

TABLES = {"free-neurons": free_neurons_table, "prices": price_table}


def markers(name: str) -> tuple[str, str]:
    return (f"<!-- generated:{name} (workers-ai-emulator cost-table --{name}) -->",
            f"<!-- end generated:{name} -->")


def block_in(text: str, name: str) -> str | None:
    """The generated block currently in `text` (without its markers), or None if absent."""
    begin, end = markers(name)
    m = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), text, re.S)
    return m.group(1) if m else None


def replace_block(path: Path, name: str) -> bool:
    """Rewrite the block `name` in the file; True if the file changed."""
    text = path.read_text(encoding="utf-8")
    begin, end = markers(name)
    current = block_in(text, name)
    if current is None:
        raise ValueError(f"{path} has no {begin!r} … {end!r} block")
    fresh = TABLES[name]()
    if current == fresh:
        return False
    path.write_text(text.replace(f"{begin}\n{current}{end}", f"{begin}\n{fresh}{end}"), encoding="utf-8")
    return True
