"""Fault injection: Cloudflare's own failure modes (3040, 3007, 7009, 1000, 4006), latency, stream faults.

A fault fires on matching calls chosen by `nth` (only the n-th), `every` (every k-th) and/or
`probability` (the k-th draw of a fault is a pure function of its seed and k, so the same seed and
the same sequence of calls always fail the same calls, in one process or across the workers of
`serve --workers N`, which share only the counters). `times` caps how often it fires.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from emulator.call import Call, StreamCut, StreamEvent, StreamFilter
from emulator.control.scope import Scope, SpecError, request_body
from emulator.errors import CATALOGUE, CFError, Layer
from emulator.fakes.seed import derive_seed
from emulator.server.render import close_events

# Friendly names and the codes users know → catalogue kinds.
ERROR_ALIASES: dict[str, str] = {"upstream": "upstream_unavailable", "daily": "daily_limit"}
PREFERRED_BY_CODE: dict[int, str] = {
    3040: "capacity",
    3007: "timeout",
    7009: "upstream_unavailable",
    1000: "server_error",
    4006: "daily_limit",
    3008: "aborted",
}
LATENCY = "latency"
SLOW_STREAM = "slow_stream"
CUT_STREAM = "cut_stream"
STREAM_KINDS = frozenset({SLOW_STREAM, CUT_STREAM})
# Fields catalogue templates may ask for; str.format ignores the ones a template does not use.
TEMPLATE_DEFAULTS = {"detail": "emulated fault", "type": "string", "what": "body", "path": ""}


def error_kind(value: Any) -> str:
    """A catalogue kind from a kind name (`capacity`, `upstream`, …) or a Cloudflare code (3040, "7009")."""
    if isinstance(value, str) and not value.isdigit():
        kind = ERROR_ALIASES.get(value, value)
        if kind not in CATALOGUE:
            raise SpecError(
                f"unknown error kind {value!r}; use a code (3040, 3007, 7009, 1000, 4006, …) "
                f"or one of {sorted(PREFERRED_BY_CODE.values())}"
            )
        return kind
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


def make_error(kind: str, call: Call) -> CFError:
    return CFError(
        kind,
        **{**TEMPLATE_DEFAULTS, "request_id": call.request_id, "model": call.model.name, "path": call.path},
    )


@dataclass(slots=True)
class Latency:
    """A fixed delay, or one drawn from a uniform / normal distribution clamped to [min_ms, max_ms]."""

    fixed_ms: float | None = None
    distribution: str | None = None
    min_ms: float = 0.0
    max_ms: float | None = None
    mean_ms: float = 0.0
    stddev_ms: float = 0.0

    @classmethod
    def parse(cls, value: Any) -> Latency | None:
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < 0:
                raise SpecError("latency must be >= 0 ms")
            return cls(fixed_ms=float(value))
        if not isinstance(value, dict):
            raise SpecError('`latency_ms` must be a number or {"distribution": "uniform"|"normal", …}')
        dist = value.get("distribution")
        try:
            nums = {k: float(value[k]) for k in ("min_ms", "max_ms", "mean_ms", "stddev_ms") if k in value}
        except (TypeError, ValueError):
            raise SpecError("latency bounds must be numbers") from None
        if any(v < 0 for v in nums.values()):
            raise SpecError("latency values must be >= 0")
        if dist == "uniform":
            if "max_ms" not in nums:
                raise SpecError("a uniform latency needs `max_ms` (and optionally `min_ms`)")
            if nums.get("min_ms", 0.0) > nums["max_ms"]:
                raise SpecError("`min_ms` is larger than `max_ms`")
            return cls(distribution="uniform", min_ms=nums.get("min_ms", 0.0), max_ms=nums["max_ms"])
        if dist == "normal":
            if "mean_ms" not in nums:
                raise SpecError("a normal latency needs `mean_ms` (and `stddev_ms`, optional bounds)")
            return cls(
                distribution="normal",
                mean_ms=nums["mean_ms"],
                stddev_ms=nums.get("stddev_ms", 0.0),
                min_ms=nums.get("min_ms", 0.0),
                max_ms=nums.get("max_ms"),
            )
        raise SpecError(f'unknown latency distribution {dist!r}; use "uniform" or "normal"')

    def sample_seconds(self, rng: random.Random) -> float:
        if self.fixed_ms is not None:
            return self.fixed_ms / 1000
        if self.distribution == "uniform":
            ms = rng.uniform(self.min_ms, self.max_ms or self.min_ms)
        else:
            ms = rng.gauss(self.mean_ms, self.stddev_ms)
        ms = max(self.min_ms, ms)
        if self.max_ms is not None:
            ms = min(self.max_ms, ms)
        return ms / 1000

    def describe(self) -> Any:
        if self.fixed_ms is not None:
            return self.fixed_ms
        if self.distribution == "uniform":
            return {"distribution": "uniform", "min_ms": self.min_ms, "max_ms": self.max_ms}
        return {
            "distribution": "normal",
            "mean_ms": self.mean_ms,
            "stddev_ms": self.stddev_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
        }


def _positive_int(spec: dict[str, Any], key: str, minimum: int = 1) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"`{key}` must be an integer >= {minimum}")
    return value


FAULT_KEYS = frozenset(
    {
        "id",
        "name",
        "kind",
        "error",
        "model",
        "surface",
        "account",
        "body",
        "prompt",
        "nth",
        "every",
        "probability",
        "seed",
        "times",
        "latency_ms",
        "delay_ms",
        "after_events",
    }
)


@dataclass(slots=True)
class Fault:
    id: str
    kind: str  # "error", LATENCY, SLOW_STREAM or CUT_STREAM
    scope: Scope
    error: str | None = None  # catalogue kind for kind == "error"
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
        if not isinstance(spec, dict):
            raise SpecError('a fault is a JSON object, e.g. {"kind": "capacity", "model": "@cf/meta/*"}')
        unknown = set(spec) - FAULT_KEYS
        if unknown:
            raise SpecError(f"unknown fault field(s) {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        raw_kind = spec.get("kind", spec.get("error"))
        if raw_kind is None:
            raise SpecError(
                "a fault needs `kind` (capacity, timeout, upstream, server_error, daily_limit, "
                "latency, slow_stream, cut_stream) or `error` (a Cloudflare code)"
            )
        if raw_kind in (LATENCY, SLOW_STREAM, CUT_STREAM):
            kind, error = str(raw_kind), None
        else:
            kind, error = "error", error_kind(raw_kind)
        probability = spec.get("probability")
        if probability is not None and (
            isinstance(probability, bool)
            or not isinstance(probability, (int, float))
            or not 0 <= probability <= 1
        ):
            raise SpecError("`probability` must be a number between 0 and 1")
        seed = spec.get("seed", default_seed)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SpecError("`seed` must be an integer")
        latency = Latency.parse(spec.get("latency_ms"))
        if kind == LATENCY and latency is None:
            raise SpecError("a latency fault needs `latency_ms` (a number or a distribution)")
        delay = spec.get("delay_ms", 0.0)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise SpecError("`delay_ms` must be a number >= 0")
        if kind == SLOW_STREAM and not delay:
            raise SpecError("a slow_stream fault needs `delay_ms` (the extra delay before every event)")
        after = _positive_int(spec, "after_events", minimum=0)
        if kind == CUT_STREAM and after is None:
            raise SpecError(
                "a cut_stream fault needs `after_events` (events sent before the connection drops)"
            )
        name = spec.get("name")
        if name is not None and not isinstance(name, str):
            raise SpecError("`name` must be a string")
        return cls(
            id=fault_id,
            kind=kind,
            scope=Scope.parse(spec),
            error=error,
            name=name,
            nth=_positive_int(spec, "nth"),
            every=_positive_int(spec, "every"),
            probability=float(probability) if probability is not None else None,
            seed=seed,
            times=_positive_int(spec, "times"),
            latency=latency,
            delay_ms=float(delay),
            after_events=after or 0,
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
    error = next((f for f in fired if f.kind == "error"), None)
    if error is not None and error.error == "capacity" and reject_if_busy(call):
        return fired, 0.0
    return fired, sum(f.delay_seconds() for f in fired if f.kind in ("error", LATENCY))


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
        error = next((f for f in fired if f.kind == "error"), None)
        if error is not None and error.error == "capacity" and reject_if_busy(call):
            raise make_error("capacity", call)
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
