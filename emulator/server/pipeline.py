"""The one path every model call takes after parsing: admission → backend → charge → outcome."""

from __future__ import annotations

from dataclasses import dataclass

from emulator.call import Call, Outcome
from emulator.errors import CFError
from emulator.ledger import REFUSAL_CODES, Plan
from emulator.quirks import enabled
from emulator.server.billing import billed_neurons, with_body_cost
from emulator.server.state import ServerState


@dataclass(slots=True)
class Executed:
    outcome: Outcome
    neurons: float


# Ledger refusal reasons are also the error-catalogue kinds they are answered with.
REFUSALS = frozenset(REFUSAL_CODES)


def admit(state: ServerState, call: Call) -> None:
    admission = state.ledger.admit(call.account_id, call.model.name, task=call.model.task.name,
                                   requires_paid=call.model.requires_paid)
    if not admission.allowed:
        refuse(state, call, admission.reason or "daily_limit")


def refuse(state: ServerState, call: Call, reason: str) -> None:
    """Count the refusal in the day's usage and raise the Cloudflare error for it."""
    error = CFError(reason if reason in REFUSALS else "daily_limit", request_id=call.request_id)
    state.ledger.record_refusal(call.account_id, call.model.name, error.code)
    raise error


async def execute(state: ServerState, call: Call) -> Executed:
    """Run a validated call through the ledger and the backend; raises CFError on refusal.

    The neurons charged are the 2-decimal `cf-ai-neurons` figure (billing.billed_neurons), so a
    client's headers always add up to the ledger; failed outcomes (status >= 400) cost nothing.
    """
    admit(state, call)
    # The control plane (emulator/control.py) applies faults and stubs around the backend.
    control = state.extensions.get("control")
    if control is not None:
        outcome = await control.run(call, state.backend.handle)
    else:
        outcome = await state.backend.handle(call)
    if outcome.neurons is not None:
        exact = outcome.neurons
        estimated = False
    else:
        exact = state.prices.neurons(call.model.name, outcome.usage)
        estimated = state.prices.rule(call.model.name).estimated
        outcome = with_body_cost(call, outcome, exact)
    if outcome.status >= 400:
        return Executed(outcome, 0.0)
    neurons = billed_neurons(exact)
    if _would_cross_wall(state, call, neurons):
        refuse(state, call, "daily_limit")
    await state.ledger.charge_async(call.account_id, call.model.name, neurons, status=outcome.status,
                                    estimated=estimated, source=state.backend.name)
    if control is not None:
        control.charged(call, neurons)
    return Executed(outcome, neurons)


def _would_cross_wall(state: ServerState, call: Call, neurons: float) -> bool:
    # Only with the `daily-limit-crossing-call-allowed` quirk off: the fake already ran (it is
    # pure), so the exact cost is known and a crossing call can be refused before it is charged.
    ledger = state.ledger
    if ledger.plan is not Plan.FREE or enabled(state.quirks, "daily-limit-crossing-call-allowed"):
        return False
    return ledger.day_total(call.account_id) + neurons > ledger.daily_neurons
