"""The one path every model call takes after parsing: admission → backend → charge → outcome."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from emulator.accounting.billing import billed_neurons, with_body_cost
from emulator.accounting.ledger import REFUSAL_CODES, Plan
from emulator.call import Call, Outcome
from emulator.catalog import Model
from emulator.errors import CFError
from emulator.quirks import enabled
from emulator.server.answer_cache import CachedAnswer
from emulator.server.state import ServerState


@dataclass(slots=True)
class Executed:
    call: Call
    outcome: Outcome
    neurons: float
    estimated: bool = False
    plain: bool = True  # the backend's own outcome: no stub answered, no fault fired


# Ledger refusal reasons are also the error-catalogue kinds they are answered with.
REFUSALS = frozenset(REFUSAL_CODES)
# Set by a surface handler on a request whose answer is a pure function of it (answer_cache.py).
EXECUTED: web.RequestKey[Executed] = web.RequestKey("executed", Executed)


def admit(state: ServerState, account: str, model: Model, request_id: str) -> None:
    admission = state.ledger.admit(account, model.name, task=model.task.name,
                                   requires_paid=model.requires_paid)
    if not admission.allowed:
        refuse(state, account, model, request_id, admission.reason or "daily_limit")


def refuse(state: ServerState, account: str, model: Model, request_id: str, reason: str) -> None:
    """Count the refusal in the day's usage and raise the Cloudflare error for it."""
    error = CFError(reason if reason in REFUSALS else "daily_limit", request_id=request_id)
    state.ledger.record_refusal(account, model.name, error.code)
    raise error


async def charge(state: ServerState, account: str, model: Model, neurons: float, *, surface: str,
                 request_id: str, status: int = 200, estimated: bool = False) -> None:
    """Charge an answered call to the ledger with the surface it arrived on (refused instead if it
    would cross the free wall and the quirk that lets it through is off); the answer may leave only
    after this returns."""
    if _would_cross_wall(state, account, neurons):
        refuse(state, account, model, request_id, "daily_limit")
    await state.ledger.charge_async(account, model.name, neurons, status=status, estimated=estimated,
                                    source=state.backend.name, surface=surface)


async def execute(state: ServerState, call: Call) -> Executed:
    """Run a validated call through the ledger and the backend; raises CFError on refusal.

    The neurons charged are the 2-decimal `cf-ai-neurons` figure (billing.billed_neurons), so a
    client's headers always add up to the ledger; failed outcomes (status >= 400) cost nothing.
    """
    admit(state, call.account_id, call.model, call.request_id)
    # The control plane (emulator/control/plane.py) applies faults and stubs around the backend.
    control = state.control
    plain = True
    if control is not None:
        outcome, plain = await control.run(call, state.backend.handle)
    else:
        outcome = await state.backend.handle(call)
    if outcome.neurons is not None:
        exact = outcome.neurons
        estimated = False
    else:
        exact = state.prices.neurons(call.model.name, outcome.usage,
                                     measured=enabled(state.quirks, "billing-as-measured"))
        estimated = state.prices.rule(call.model.name).estimated
        outcome = with_body_cost(call, outcome, exact)
    if outcome.status >= 400:
        return Executed(call, outcome, 0.0, estimated, plain=False)
    neurons = billed_neurons(exact)
    await charge(state, call.account_id, call.model, neurons, surface=call.surface.value,
                 request_id=call.request_id, status=outcome.status, estimated=estimated)
    if control is not None:
        control.charged(call, neurons)
    return Executed(call, outcome, neurons, estimated, plain)


async def execute_request(request: web.Request, state: ServerState, call: Call) -> Executed:
    """`execute` for an HTTP request, noting what it produced where the answer cache looks for it."""
    executed = await execute(state, call)
    request[EXECUTED] = executed
    return executed


def untouched(state: ServerState) -> bool:
    """No stub or fault can change an answer right now."""
    return state.control is None or state.control.untouched()


async def answer_again(state: ServerState, account: str, answer: CachedAnswer, request_id: str
                       ) -> web.Response:
    """Serve a remembered mock answer: admitted, charged and logged like the first time."""
    admit(state, account, answer.model, request_id)
    await charge(state, account, answer.model, answer.neurons, surface=answer.surface,
                 request_id=request_id, estimated=answer.estimated)
    if state.control is not None:
        state.control.answered_again(answer.model.name, answer.surface, request_id,
                                     source=state.backend.name, neurons=answer.neurons)
    return answer.response(request_id, state.clock)


def _would_cross_wall(state: ServerState, account: str, neurons: float) -> bool:
    """Whether a finished call must be refused at the free wall instead of charged. The answer is
    computed (fakes are pure) but not sent yet, so its exact cost is known. By default nothing is
    refused here (admission already checked the wall). With `daily-limit-crossing-call-allowed` off,
    a call that would cross is refused; with `daily-limit-concurrent-calls-cross` off, a call is
    refused once calls that finished while it ran reached the wall (at most one call crosses)."""
    ledger = state.ledger
    if ledger.plan is not Plan.FREE:
        return False
    crossing = enabled(state.quirks, "daily-limit-crossing-call-allowed")
    concurrent = enabled(state.quirks, "daily-limit-concurrent-calls-cross")
    if crossing and concurrent:
        return False
    booked = ledger.day_total(account) + ledger.pending_total(account)
    if not crossing:
        return booked + neurons > ledger.daily_neurons
    return booked >= ledger.daily_neurons
