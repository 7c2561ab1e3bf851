"""Per-call billing: the neuron figure a call is charged (the `cf-ai-neurons` value) and cost in the body.

Cloudflare shows a call's cost in the `cf-ai-neurons` header as a 2-decimal string. The ledger
records exactly that figure, so the sum of the headers a client saw equals the ledger total
(see docs/costs.md for the consequence: calls under 0.005 neurons are recorded as 0.00).

Some newer models also report the cost in the body
(fixtures/observations/binding-results-observed-2026-10.json): LLMs as `usage.neurons`, bge-m3 as a
`meta` object.
That body figure is the exact (unrounded) value, as in the captures.
"""

from __future__ import annotations

from typing import Any

from emulator.accounting.pricing import round_neurons
from emulator.call import Call, Outcome

# Models seen reporting `usage.neurons` in their output
# (fixtures/observations/binding-results-observed-2026-10.json).
USAGE_NEURONS_MODELS = frozenset({
    "@cf/google/gemma-4-26b-a4b-it",
    "@cf/meta/llama-3.2-3b-instruct",
    "@cf/qwen/qwen3-embedding-0.6b",
})
# Models seen reporting `meta{cost_metric_name_1, cost_metric_value_1, neurons}`.
META_COST_MODELS = frozenset({"@cf/baai/bge-m3"})


def billed_neurons(exact: float) -> float:
    """The figure charged to the ledger: the header's 2-decimal value, as a float."""
    return float(round_neurons(exact))


def with_body_cost(call: Call, outcome: Outcome, exact: float) -> Outcome:
    """The outcome with the cost written into the body where the model reports it and its catalog
    output schema allows the extra key; otherwise the outcome unchanged (never mutated: the mock
    backend caches outcomes)."""
    name = call.model.name
    result = outcome.result
    if outcome.rendered or not isinstance(result, dict) or (
            name not in USAGE_NEURONS_MODELS and name not in META_COST_MODELS):
        return outcome
    annotated: dict[str, Any] = dict(result)
    if name in META_COST_MODELS:
        annotated["meta"] = {"cost_metric_name_1": "input_tokens",
                             "cost_metric_value_1": outcome.usage.input_tokens, "neurons": exact}
    else:
        usage = annotated.get("usage")
        if isinstance(usage, dict):
            annotated["usage"] = {**usage, "neurons": exact}
        else:
            tokens = outcome.usage.input_tokens
            annotated["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens, "neurons": exact}
    if call.model.output_schema and not _still_valid(call, result, annotated):
        return outcome
    return Outcome(result=annotated, body=outcome.body, content_type=outcome.content_type,
                   events=outcome.events, usage=outcome.usage, status=outcome.status,
                   headers=outcome.headers, rendered=outcome.rendered, neurons=outcome.neurons,
                   extras=outcome.extras)


def _still_valid(call: Call, before: dict[str, Any], after: dict[str, Any]) -> bool:
    """False when the cost key is what makes the output break its catalog schema (a schema with
    `additionalProperties: false`); a fake output that was already off-schema is not our call."""
    check = call.model.output_validator.is_valid
    return check(after) or not check(before)
