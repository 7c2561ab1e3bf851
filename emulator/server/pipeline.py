"""The one path every model call takes after parsing: admission → backend → charge → outcome."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from emulator.accounting.billing import billed_neurons, with_body_cost
from emulator.accounting.ledger import Plan
from emulator.call import Call, CallReport, EventSource, Outcome, StreamFilter
from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.quirks import enabled
from emulator.server.answer_cache import CachedAnswer
from emulator.server.render import CALL_REPORT
from emulator.server.state import Controlled, ServerState


@dataclass(slots=True)
class Executed:
    """What one model call returned: the outcome, what it cost, its report for the request log, and
    the stream faults to apply to whatever events the surface writes for it."""

    call: Call
    outcome: Outcome
    neurons: float
    report: CallReport
    estimated: bool = False
    plain: bool = True  # the backend's own outcome: no stub answered, no fault fired
    stream_filter: StreamFilter | None = None

    def events(self, source: EventSource) -> EventSource:
        """`source` as the client gets it: slowed or cut by the stream faults that fired."""
        return source if self.stream_filter is None else self.stream_filter(source)


# On the response a surface rendered from one model call: what the answer cache keeps it by.
EXECUTED: web.ResponseKey[Executed] = web.ResponseKey("executed", Executed)


def admit(state: ServerState, account: str, model: Model, request_id: str) -> None:
    admission = state.ledger.admit(account, model.name, task=model.task.name,
                                   requires_paid=model.requires_paid)
    if not admission.allowed:
        refuse(state, account, model, request_id, admission.reason or ErrorKind.DAILY_LIMIT)


def refuse(state: ServerState, account: str, model: Model, request_id: str, reason: ErrorKind) -> None:
    """Count the refusal in the day's usage and raise the Cloudflare error for it."""
    error = CFError(reason, request_id=request_id)
    state.ledger.record_refusal(account, model.name, error.code)
    raise error


async def charge(state: ServerState, account: str, model: Model, neurons: float, *, surface: str,
                 request_id: str, status: int = 200, estimated: bool = False) -> None:
    """Charge an answered call to the ledger with the surface it arrived on (refused instead if it
    would cross the free wall and the quirk that lets it through is off); the answer may leave only
    after this returns."""
    if _would_cross_wall(state, account, neurons):
        refuse(state, account, model, request_id, ErrorKind.DAILY_LIMIT)
    await state.ledger.charge_async(account, model.name, neurons, status=status, estimated=estimated,
                                    source=state.backend.name, surface=surface)


async def execute(state: ServerState, call: Call) -> Executed:
    """Run a validated call through the ledger and the backend; raises CFError on refusal.

    The neurons charged are the 2-decimal `cf-ai-neurons` figure (billing.billed_neurons), so a
    client's headers always add up to the ledger; failed outcomes (status >= 400) cost nothing.
    """
    admit(state, call.account_id, call.model, call.request_id)
    # The control plane (emulator/control/plane.py) applies faults and stubs around the backend; with
    # none set, the backend answers alone (what the plane would do too, without its per-call walk).
    control = state.control
    if control is not None and not control.untouched():
        controlled = await control.run(call, state.backend.handle)
    else:
        plain = CallReport.of(call, source=state.backend.name)
        try:
            outcome = await state.backend.handle(call)
        except CFError as error:
            error.call = plain  # the request log names the backend that refused (a replay miss)
            raise
        controlled = Controlled(outcome, plain)
    outcome, report = controlled.outcome, controlled.report
    if outcome.neurons is not None:
        exact = outcome.neurons
        estimated = False
    else:
        exact = state.prices.neurons(call.model.name, outcome.usage,
                                     measured=enabled(state.quirks, "billing-as-measured"))
        estimated = state.prices.rule(call.model.name).estimated
        outcome = with_body_cost(call, outcome, exact)
    if outcome.status >= 400:
        return Executed(call, outcome, 0.0, report, estimated, plain=False,
                        stream_filter=controlled.stream_filter)
    neurons = billed_neurons(exact)
    try:
        await charge(state, call.account_id, call.model, neurons, surface=call.surface.value,
                     request_id=call.request_id, status=outcome.status, estimated=estimated)
    except CFError as error:
        error.call = report
        raise
    return Executed(call, outcome, neurons, report.charged(neurons), estimated, report.plain,
                    controlled.stream_filter)


def answered(response: web.StreamResponse, executed: Executed) -> web.StreamResponse:
    """`response`, rendered from `executed`, carrying it back: the request log reads its report,
    the answer cache what to keep."""
    response[CALL_REPORT] = executed.report
    response[EXECUTED] = executed
    return response


def untouched(state: ServerState) -> bool:
    """No stub or fault can change an answer right now."""
    return state.control is None or state.control.untouched()


async def answer_again(state: ServerState, account: str, answer: CachedAnswer, request_id: str
                       ) -> web.Response:
    """Serve a remembered mock answer: admitted, charged and logged like the first time."""
    admit(state, account, answer.model, request_id)
    await charge(state, account, answer.model, answer.neurons, surface=answer.surface,
                 request_id=request_id, estimated=answer.estimated)
    response = answer.response(request_id, state.clock)
    response[CALL_REPORT] = CallReport(answer.model.name, answer.surface, request_id,
                                       source=state.backend.name, neurons=answer.neurons)
    return response


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
