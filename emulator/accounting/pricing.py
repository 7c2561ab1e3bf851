"""Neuron pricing: per-model price rules from `data/prices.json`, turning a call's `Usage` into neurons."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

from emulator.call import Usage

NEURON_USD = 0.011 / 1000  # $0.011 per 1,000 neurons: https://developers.cloudflare.com/workers-ai/platform/pricing/
FREE_DAILY_NEURONS = 10_000
ESTIMATE = "estimate"

RULE_KINDS = frozenset(
    {
        "tokens",
        "embedding_tokens",
        "images",
        "tiles_steps",
        "flux2_dev",
        "flux2_klein_4b",
        "megapixels",
        "audio_minutes",
        "characters_per_1k",
    }
)

_MILLION = 1_000_000.0


@dataclass(frozen=True)
class PriceRule:
    """How one model is billed. `rates` are neurons per unit (see `PriceBook.neurons` for the units)."""

    model: str
    rule: str
    rates: Mapping[str, float]
    source: str  # "pricing-page-2026-08-28" | "catalog" | "estimate"
    estimated_from: str | None
    note: str

    @property
    def estimated(self) -> bool:
        return self.source == ESTIMATE


def _rule_from(model: str, raw: Mapping[str, Any]) -> PriceRule:
    kind = raw["rule"]
    if kind not in RULE_KINDS:
        raise ValueError(f"{model}: unknown price rule {kind!r}")
    return PriceRule(
        model=model,
        rule=kind,
        rates=MappingProxyType({k: float(v) for k, v in raw["rates"].items()}),
        source=raw["source"],
        estimated_from=raw.get("estimated_from"),
        note=raw.get("note", ""),
    )


class PriceBook:
    """All price rules plus the per-task rate limits
    (https://developers.cloudflare.com/workers-ai/platform/limits/); built from the parsed `prices.json`
    document."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.neuron_usd: float = float(doc.get("neuron_usd", NEURON_USD))
        self.free_daily_neurons: float = float(doc.get("free_daily_neurons", FREE_DAILY_NEURONS))
        self._rules: dict[str, PriceRule] = {
            name: _rule_from(name, raw) for name, raw in doc.get("models", {}).items()
        }
        # Where a live call was billed differently from the page's arithmetic: the measured rates (same
        # rule kind), used while the `billing-as-measured` quirk is on (docs/costs.md lists each case).
        self._measured: dict[str, PriceRule] = {
            name: _rule_from(name, {**raw, **raw["measured"]})
            for name, raw in doc.get("models", {}).items() if "measured" in raw
        }
        self._default = _rule_from("*", doc["default_rule"])
        limits = doc.get("rate_limits", {})
        self._task_rpm: dict[str, int] = {k: int(v) for k, v in limits.get("tasks", {}).items()}
        self._model_rpm: dict[str, int] = {k: int(v) for k, v in limits.get("models", {}).items()}

    @property
    def models(self) -> list[str]:
        return sorted(self._rules)

    def has_rule(self, model: str) -> bool:
        return model in self._rules

    @property
    def measured_models(self) -> list[str]:
        return sorted(self._measured)

    def measured_rule(self, model: str) -> PriceRule | None:
        return self._measured.get(model)

    def rule(self, model: str, *, measured: bool = False) -> PriceRule:
        """The model's rule (its measured one when asked and known); an unknown model gets the generic
        token rule (marked estimated)."""
        if measured and model in self._measured:
            return self._measured[model]
        found = self._rules.get(model)
        if found is not None:
            return found
        d = self._default
        return PriceRule(model, d.rule, d.rates, d.source, d.estimated_from, d.note)

    def neurons(self, model: str, usage: Usage, *, measured: bool = False) -> float:
        """Exact (unrounded) neurons for one call.

        Units: tokens and images per million; tiles are 512×512 tiles as reported in `usage`
        (the fakes compute ceil(w*h / 512²)); megapixels as reported; audio per minute
        (audio_seconds / 60); characters per 1,000. `cached_input_tokens` is the part of
        `input_tokens` served from cache (OpenAI `prompt_tokens_details.cached_tokens` convention):
        it is billed at the cached rate, or at the input rate when the model lists none.
        """
        r = self.rule(model, measured=measured)
        rate = r.rates.get
        kind = r.rule
        if kind == "tokens":
            cached = min(usage.cached_input_tokens, usage.input_tokens)
            fresh = usage.input_tokens - cached
            n = (
                fresh * rate("per_m_input", 0.0)
                + cached * rate("per_m_cached_input", rate("per_m_input", 0.0))
                + usage.output_tokens * rate("per_m_output", 0.0)
            ) / _MILLION
        elif kind == "embedding_tokens":
            n = usage.input_tokens * rate("per_m_input", 0.0) / _MILLION
        elif kind == "images":
            n = usage.images * rate("per_m_images", 0.0) / _MILLION
        elif kind == "tiles_steps":
            n = (usage.output_tiles * rate("per_tile", 0.0) + usage.steps * rate("per_step", 0.0)
                 + usage.output_tiles * usage.steps * rate("per_tile_step", 0.0))
        elif kind == "flux2_dev":
            n = usage.steps * (
                usage.input_tiles * rate("per_input_tile_step", 0.0)
                + usage.output_tiles * rate("per_output_tile_step", 0.0)
            )
        elif kind == "flux2_klein_4b":
            n = usage.input_tiles * rate("per_input_tile", 0.0) + usage.output_tiles * rate(
                "per_output_tile", 0.0
            )
        elif kind == "megapixels":
            # The first megapixel is a flat fee even for smaller images (pricing page wording).
            n = 0.0
            if usage.megapixels > 0:
                n = rate("first_mp", 0.0) + max(0.0, usage.megapixels - 1.0) * rate("per_additional_mp", 0.0)
            n += usage.input_megapixels * rate("per_input_mp", 0.0)
        elif kind == "audio_minutes":
            n = usage.audio_seconds / 60.0 * rate("per_minute", 0.0)
        elif kind == "characters_per_1k":
            n = usage.characters / 1000.0 * rate("per_1k_characters", 0.0)
        else:  # pragma: no cover - _rule_from rejects unknown kinds
            raise ValueError(kind)
        n += usage.requests * rate("per_request", 0.0)
        return max(0.0, n)

    def websocket_neurons(self, model: str, usage: Usage) -> float:
        """A WebSocket session's neurons: the model's WebSocket rate per audio minute where the
        pricing page lists one (nova-3: 836.36 instead of 472.73), else the model's own rule."""
        per_minute = self.rule(model).rates.get("websocket_per_minute")
        if per_minute is None:
            return self.neurons(model, usage)
        return max(0.0, usage.audio_seconds / 60.0 * per_minute)

    def rate_limit_rpm(self, model: str, task: str) -> int | None:
        """Requests per minute for (account, model): a per-model exception, else the task's, else None."""
        if model in self._model_rpm:
            return self._model_rpm[model]
        return self._task_rpm.get(task)


@functools.cache
def load_prices() -> PriceBook:
    """The packaged price book (parsed once per process)."""
    text = (resources.files("emulator.accounting") / "data" / "prices.json").read_text(encoding="utf-8")
    return PriceBook(json.loads(text))


def round_neurons(n: float) -> str:
    """Neurons as the `cf-ai-neurons` header shows them: a 2-decimal string ("0.00", "104.20")."""
    if not math.isfinite(n) or n <= 0:
        return "0.00"
    return f"{n:.2f}"


def dollars(neurons: float) -> float:
    # Rounded to 1e-10 dollars: 8.8 neurons are $9.68e-05, not the product's 9.680000000000001e-05.
    return round(neurons * NEURON_USD, 10)
