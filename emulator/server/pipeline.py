"""The one path every model call takes after parsing: admission → backend → charge → outcome."""

from __future__ import annotations

from dataclasses import dataclass

from emulator.call import Call, Outcome
from emulator.errors import CFError
from emulator.server.state import ServerState


@dataclass(slots=True)
class Executed:
    outcome: Outcome
    neurons: float


REFUSALS = {"daily_limit": "daily_limit", "requires_paid": "requires_paid", "rate_limited": "rate_limited"}


def admit(state: ServerState, call: Call) -> None:
    admission = state.ledger.admit(call.account_id, call.model.name, task=call.model.task.name,
                                   requires_paid=call.model.requires_paid)
    if not admission.allowed:
        reason = admission.reason or "daily_limit"
        error = CFError(REFUSALS.get(reason, "daily_limit"), request_id=call.request_id)
        state.ledger.record_refusal(call.account_id, call.model.name, error.code)
        raise error


async def execute(state: ServerState, call: Call) -> Executed:
    """Run a validated call through the ledger and the backend; raises CFError on refusal."""
    admit(state, call)
    outcome = await state.backend.handle(call)
    if outcome.neurons is not None:
        neurons = outcome.neurons
        estimated = False
    else:
        neurons = state.prices.neurons(call.model.name, outcome.usage)
        estimated = state.prices.rule(call.model.name).estimated
    if outcome.status < 400:
        state.ledger.charge(call.account_id, call.model.name, neurons, status=outcome.status,
                            estimated=estimated, source=state.backend.name)
    return Executed(outcome, neurons)
