"""Fault injection: Cloudflare's own failure modes (3040, 3007, 7009, 1000, 4006), latency, stream faults.

A fault fires on matching calls chosen by `nth` (only the n-th), `every` (every k-th) and/or
`probability` (the k-th draw of a fault is a pure function of its seed and k, so the same seed and
the same sequence of calls always fail the same calls, in one process or across the workers of
`serve --workers N`, which share only the counters). `times` caps how often it fires.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from emulator.call import Call, StreamCut, StreamEvent, StreamFilter
from emulator.control.scope import Scope, ScopeSpec, SpecError, SpecModel, request_body
from emulator.errors import CATALOGUE, CFError, ErrorKind, Layer
from emulator.fakes.seed import derive_seed
from emulator.limits import MAX_FAULT_DELAY_MS, is_number_text
from emulator.server.render import close_events

# Friendly names and the codes users know → catalogue kinds.
ERROR_ALIASES: dict[str, ErrorKind] = {
    "upstream": ErrorKind.UPSTREAM_UNAVAILABLE,
    "daily": ErrorKind.DAILY_LIMIT,
}
PREFERRED_BY_CODE: dict[int, ErrorKind] = {
    3040: ErrorKind.CAPACITY,
    3007: ErrorKind.TIMEOUT,
    7009: ErrorKind.UPSTREAM_UNAVAILABLE,
    1000: ErrorKind.SERVER_ERROR,
    4006: ErrorKind.DAILY_LIMIT,
    3008: ErrorKind.ABORTED,
}


class FaultKind(enum.StrEnum):
    ERROR = "error"  # a Cloudflare error from the catalogue (`Fault.error`)
    LATENCY = "latency"
    SLOW_STREAM = "slow_stream"
    CUT_STREAM = "cut_stream"


LATENCY = FaultKind.LATENCY
SLOW_STREAM = FaultKind.SLOW_STREAM
CUT_STREAM = FaultKind.CUT_STREAM
STREAM_KINDS = frozenset({SLOW_STREAM, CUT_STREAM})
# Fields catalogue templates may ask for; str.format ignores the ones a template does not use.
TEMPLATE_DEFAULTS = {"detail": "emulated fault", "type": "string", "what": "body", "path": ""}


def error_kind(value: Any) -> ErrorKind:
    """A catalogue kind from a kind name (`capacity`, `upstream`, …) or a Cloudflare code (3040, "7009")."""
    if isinstance(value, str) and not is_number_text(value):
        if value in ERROR_ALIASES:
            return ERROR_ALIASES[value]
        try:
            return ErrorKind(value)
        except ValueError:
            raise SpecError(
                f"unknown error kind {value[:40]!r}; use a code (3040, 3007, 7009, 1000, 4006, …) "
                f"or one of {sorted(kind.value for kind in PREFERRED_BY_CODE.values())}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError(f"`error` must be a Cloudflare error code or kind, not {value!r}")
    code = int(value)
    if code in PREFERRED_BY_CODE:
        return PREFERRED_BY_CODE[code]
    # Model-layer entries first: an injected error comes from Workers AI, not from the API edge.
    for kind, spec in sorted(CATALOGUE.items(), key=lambda item: item[1].layer is not Layer.MODEL):
        if spec.code == code:
            return kind
    raise SpecError(f"no Cloudflare error with code {code} in the emulator's catalogue")


def make_error(kind: ErrorKind, call: Call) -> CFError:
    return CFError(
        kind,
        **{**TEMPLATE_DEFAULTS, "request_id": call.request_id, "model": call.model.name, "path": call.path},
    )


class Distribution(enum.StrEnum):
    UNIFORM = "uniform"
    NORMAL = "normal"


def _distribution(value: Any) -> Distribution:
    try:
        return Distribution(value)
    except ValueError:
        raise SpecError(f'unknown latency distribution {value!r}; use "uniform" or "normal"') from None


LATENCY_TOO_LONG = f"latency values must be at most {MAX_FAULT_DELAY_MS:,.0f} ms (10 minutes)"
DELAY_TOO_LONG = f"`delay_ms` must be at most {MAX_FAULT_DELAY_MS:,.0f} ms (10 minutes)"


class Latency(SpecModel):
    """A fixed delay (`latency_ms: 40`), or one drawn from a uniform / normal distribution clamped to
    [min_ms, max_ms]. Bounds given as numeric strings are taken, and fields beside them ignored."""

    model_config = ConfigDict(strict=False, extra="ignore")
    MESSAGES: ClassVar[dict[str, str]] = dict.fromkeys(
        ("min_ms", "max_ms", "mean_ms", "stddev_ms"), "latency bounds must be numbers"
    )

    fixed_ms: float | None = None
    min_ms: float = 0.0
    max_ms: float | None = None
    mean_ms: float = 0.0
    stddev_ms: float = 0.0
    distribution: Annotated[Distribution | None, BeforeValidator(_distribution)] = None

    @model_validator(mode="before")
    @classmethod
    def _number_or_distribution(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < 0:
                raise SpecError("latency must be >= 0 ms")
            if not value <= MAX_FAULT_DELAY_MS:
                raise SpecError(LATENCY_TOO_LONG)
            return {"fixed_ms": value}
        if not isinstance(value, dict):
            raise SpecError('`latency_ms` must be a number or {"distribution": "uniform"|"normal", …}')
        return {"distribution": None, **{k: v for k, v in value.items() if k != "fixed_ms"}}

    @field_validator("max_ms", mode="before")
    @classmethod
    def _given_max(cls, value: Any) -> Any:
        if value is None:
            raise SpecError("latency bounds must be numbers")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Latency:
        given = [v for v in (self.min_ms, self.max_ms, self.mean_ms, self.stddev_ms) if v is not None]
        if any(v < 0 for v in given):
            raise SpecError("latency values must be >= 0")
        if not all(v <= MAX_FAULT_DELAY_MS for v in given):  # NaN too
            raise SpecError(LATENCY_TOO_LONG)
        if self.distribution is Distribution.UNIFORM:
            if self.max_ms is None:
                raise SpecError("a uniform latency needs `max_ms` (and optionally `min_ms`)")
            if self.min_ms > self.max_ms:
                raise SpecError("`min_ms` is larger than `max_ms`")
        if self.distribution is Distribution.NORMAL and "mean_ms" not in self.model_fields_set:
            raise SpecError("a normal latency needs `mean_ms` (and `stddev_ms`, optional bounds)")
        return self

    def sample_seconds(self, rng: random.Random) -> float:
        if self.fixed_ms is not None:
            return self.fixed_ms / 1000
        if self.distribution is Distribution.UNIFORM:
            ms = rng.uniform(self.min_ms, self.max_ms or self.min_ms)
        else:
            ms = rng.gauss(self.mean_ms, self.stddev_ms)
        ms = max(self.min_ms, ms)
        # A normal draw has no upper end: without `max_ms` it stops at the fault delay limit.
        ms = min(MAX_FAULT_DELAY_MS if self.max_ms is None else self.max_ms, ms)
        return ms / 1000

    def describe(self) -> Any:
        if self.fixed_ms is not None:
            return self.fixed_ms
        if self.distribution is Distribution.UNIFORM:
            return {"distribution": "uniform", "min_ms": self.min_ms, "max_ms": self.max_ms}
        return {
            "distribution": "normal",
            "mean_ms": self.mean_ms,
            "stddev_ms": self.stddev_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
        }


def _fault_kind(spec: dict[str, Any]) -> tuple[FaultKind, ErrorKind | None]:
    """`kind` (a fault kind, an error kind or a code) or else `error`, as (fault kind, catalogue kind)."""
    raw = spec.get("kind", spec.get("error"))
    if raw is None:
        raise SpecError(
            "a fault needs `kind` (capacity, timeout, upstream, server_error, daily_limit, "
            "latency, slow_stream, cut_stream) or `error` (a Cloudflare code)"
        )
    if raw in (LATENCY, SLOW_STREAM, CUT_STREAM):
        return FaultKind(raw), None
    return FaultKind.ERROR, error_kind(raw)


def _present(message: str) -> Callable[[Any], Any]:
    """A before-validator refusing an explicit null for a field whose absence means a default."""

    def check(value: Any) -> Any:
        if value is None:
            raise SpecError(message)
        return value

    return check


SEED_MESSAGE = "`seed` must be an integer"
DELAY_MESSAGE = "`delay_ms` must be a number >= 0"


class FaultSpec(ScopeSpec):
    """A fault as POSTed to /__emulator__/faults (docs/reference.md lists its fields)."""

    WHAT: ClassVar[str] = "fault"
    NOT_AN_OBJECT: ClassVar[str] = (
        'a fault is a JSON object, e.g. {"kind": "capacity", "model": "@cf/meta/*"}'
    )
    MESSAGES: ClassVar[dict[str, str]] = {
        **ScopeSpec.MESSAGES,
        "probability": "`probability` must be a number between 0 and 1",
        "seed": SEED_MESSAGE,
        "delay_ms": DELAY_MESSAGE,
        "after_events": "`after_events` must be an integer >= 0",
        "name": "`name` must be a string",
        "nth": "`nth` must be an integer >= 1",
        "every": "`every` must be an integer >= 1",
        "times": "`times` must be an integer >= 1",
    }

    id: Any = None  # accepted and ignored: the server names its faults
    kind: FaultKind
    error: ErrorKind | None = None  # the catalogue kind of an ERROR fault
    probability: float | None = Field(default=None, ge=0, le=1)
    seed: Annotated[int | None, BeforeValidator(_present(SEED_MESSAGE))] = None  # None: the server's seed
    latency_ms: Latency | None = None
    delay_ms: Annotated[float, BeforeValidator(_present(DELAY_MESSAGE))] = Field(default=0.0, ge=0)
    after_events: int | None = Field(default=None, ge=0)
    name: str | None = None
    nth: int | None = Field(default=None, ge=1)
    every: int | None = Field(default=None, ge=1)
    times: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _kind(cls, spec: Any) -> Any:
        kind, error = _fault_kind(spec)
        return {**spec, "kind": kind, "error": error}

    @model_validator(mode="after")
    def _what_the_kind_needs(self) -> FaultSpec:
        if self.kind is FaultKind.LATENCY and self.latency_ms is None:
            raise SpecError("a latency fault needs `latency_ms` (a number or a distribution)")
        if self.kind is FaultKind.SLOW_STREAM and not self.delay_ms:
            raise SpecError("a slow_stream fault needs `delay_ms` (the extra delay before every event)")
        if not self.delay_ms <= MAX_FAULT_DELAY_MS:
            raise SpecError(DELAY_TOO_LONG)
        if self.kind is FaultKind.CUT_STREAM and self.after_events is None:
            raise SpecError(
                "a cut_stream fault needs `after_events` (events sent before the connection drops)"
            )
        return self


@dataclass(slots=True)
class Fault:
    id: str
    kind: FaultKind
    scope: Scope
    error: ErrorKind | None = None  # for kind == "error"
    name: str | None = None
    nth: int | None = None
    every: int | None = None
    probability: float | None = None
    seed: int = 0
    times: int | None = None
    latency: Latency | None = None
    delay_ms: float = 0.0
    after_events: int = 0
    calls: int = 0  # matching calls seen
    fired: int = 0
    draws: int = 0  # probability draws made
    latency_draws: int = 0  # latency samples drawn from a distribution

    @classmethod
    def parse(cls, spec: Any, *, fault_id: str, default_seed: int) -> Fault:
        parsed = FaultSpec.parse(spec)
        return cls(
            id=fault_id,
            kind=parsed.kind,
            scope=parsed.scope(),
            error=parsed.error,
            name=parsed.name,
            nth=parsed.nth,
            every=parsed.every,
            probability=parsed.probability,
            seed=default_seed if parsed.seed is None else parsed.seed,
            times=parsed.times,
            latency=parsed.latency_ms,
            delay_ms=parsed.delay_ms,
            after_events=parsed.after_events or 0,
        )

    def applies_to(self, call: Call) -> bool:
        """The call is one this fault counts (its scope, and a stream for a stream fault)."""
        return (self.kind not in STREAM_KINDS or call.stream) and self.scope.matches(call)

    def decide(self, call: Call) -> bool:
        """Count a matching call and say whether the fault fires on it (one draw if probabilistic)."""
        if not self.applies_to(call):
            return False
        self.calls += 1
        if self.times is not None and self.fired >= self.times:
            return False
        if self.nth is not None and self.calls != self.nth:
            return False
        if self.every is not None and self.calls % self.every:
            return False
        if self.probability is not None:
            self.draws += 1
            if derive_seed(self.seed, "probability", self.draws) / 2**64 >= self.probability:
                return False
        self.fired += 1
        return True

    @property
    def exhausted(self) -> bool:
        """It can never fire again: `times` firings used up, or the call `nth` names is past."""
        if self.times is not None and self.fired >= self.times:
            return True
        return self.nth is not None and self.calls >= self.nth

    def delay_seconds(self) -> float:
        if self.latency is None:
            return 0.0
        if self.latency.fixed_ms is not None:
            return self.latency.fixed_ms / 1000
        self.latency_draws += 1
        draw = random.Random(derive_seed(self.seed, "latency", self.latency_draws))
        return self.latency.sample_seconds(draw)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "kind": self.kind, **self.scope.describe()}
        if self.error is not None:
            spec = CATALOGUE[self.error]
            out.update(error=self.error, code=spec.code, status=spec.status)
        out.update(
            nth=self.nth,
            every=self.every,
            probability=self.probability,
            seed=self.seed,
            times=self.times,
            latency_ms=self.latency.describe() if self.latency else None,
            calls=self.calls,
            fired=self.fired,
            exhausted=self.exhausted,
        )
        if self.kind == SLOW_STREAM:
            out["delay_ms"] = self.delay_ms
        if self.kind == CUT_STREAM:
            out["after_events"] = self.after_events
        return out


def reject_if_busy(call: Call) -> bool:
    """`options.rejectIfBusy: true` in the native inputs or at the top of an OpenAI body."""
    for body in (call.json_inputs, request_body(call)):
        options = body.get("options")
        if isinstance(options, dict) and options.get("rejectIfBusy") is True:
            return True
    return False


def decide_among(faults: Iterable[Fault], call: Call) -> tuple[list[Fault], float]:
    """Count `call` in each fault (in order) and draw the latency of those that fire; a capacity
    error refused at once (`rejectIfBusy`) waits for nothing, so it draws no latency."""
    fired = [f for f in faults if f.decide(call)]
    error = next((f for f in fired if f.kind is FaultKind.ERROR), None)
    if error is not None and error.error is ErrorKind.CAPACITY and reject_if_busy(call):
        return fired, 0.0
    return fired, sum(f.delay_seconds() for f in fired if f.kind in (FaultKind.ERROR, LATENCY))


class FaultSet:
    """The active faults of one server, applied in the order they were added."""

    def __init__(self, default_seed: int = 0) -> None:
        self.default_seed = default_seed
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: Any) -> Fault:
        fault = Fault.parse(spec, fault_id=f"fault-{next(self._ids)}", default_seed=self.default_seed)
        self._faults.append(fault)
        return fault

    def all(self) -> list[Fault]:
        return list(self._faults)

    def __len__(self) -> int:
        return len(self._faults)

    def remove(self, key: str) -> bool:
        before = len(self._faults)
        self._faults = [f for f in self._faults if key not in (f.id, f.name)]
        return len(self._faults) != before

    def forget(self, account: str) -> None:
        """Remove the faults scoped to one account."""
        self._faults = [f for f in self._faults if f.scope.account != account]

    def clear(self) -> None:
        self._faults.clear()
        self._ids = itertools.count(1)

    def decide(self, call: Call) -> tuple[list[Fault], float]:
        """The faults that fire on `call` and the latency they add, both drawn here."""
        return decide_among(self._faults, call)

    async def before(self, call: Call) -> list[Fault]:
        """Decide which faults fire; wait their latency; raise the first error fault's CFError.

        A capacity fault answers 3040 at once when the body says `rejectIfBusy`; otherwise it
        answers 3040 too, but only after its `latency_ms` (a request that queued, then gave up).
        """
        fired, delay = self.decide(call)
        error = next((f for f in fired if f.kind is FaultKind.ERROR), None)
        if error is not None and error.error is ErrorKind.CAPACITY and reject_if_busy(call):
            raise make_error(ErrorKind.CAPACITY, call)
        if delay > 0:
            await asyncio.sleep(delay)
        if error is not None:
            assert error.error is not None
            raise make_error(error.error, call)
        return fired

    @staticmethod
    def stream_filter(fired: list[Fault]) -> StreamFilter | None:
        """A wrapper for the events the surface writes, when a slow or cut stream fault fired.

        It yields copies: backends cache their outcomes, so the original events are never touched.
        """
        stream_faults = [f for f in fired if f.kind in STREAM_KINDS]
        if not stream_faults:
            return None
        extra = sum(f.delay_ms for f in stream_faults if f.kind == SLOW_STREAM) / 1000
        cut = min((f.after_events for f in stream_faults if f.kind == CUT_STREAM), default=None)
        return lambda events: _faulty(events, extra, cut)


async def _aiter(events: Iterable[StreamEvent] | AsyncIterator[StreamEvent]) -> AsyncGenerator[StreamEvent]:
    if isinstance(events, AsyncIterator):
        async for event in events:
            yield event
    else:
        for event in events:
            yield event


async def _faulty(
    events: Iterable[StreamEvent] | AsyncIterator[StreamEvent], extra_delay: float, cut_after: int | None
) -> AsyncIterator[StreamEvent]:
    """Copies of the events, each `extra_delay` later; with `cut_after`, drop the connection after that many.

    A cut never lets the last event ([DONE]) through, even when the stream is shorter than `cut_after`.
    """
    source = _aiter(events)
    sent = 0
    try:
        pending = await anext(source, None)
        while pending is not None:
            following = await anext(source, None)
            if cut_after is not None and (sent >= cut_after or following is None):
                raise StreamCut("stream cut by an injected fault")
            yield StreamEvent(pending.data, pending.delay + extra_delay, pending.raw)
            sent += 1
            pending = following
    finally:  # the events wrapped (a relayed upstream stream) close with the filter
        await source.aclose()
        await close_events(events)
