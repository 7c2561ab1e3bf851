"""Replay, record, passthrough and replay-or-record: one backend whose mode picks cassette and/or upstream.

- replay: answer from the cassette only; a request with no recording is a `no_cassette_match` error
  (HTTP 404, code 7404) naming the cassette, the closest recorded request and what differed.
- record: forward every request upstream and append the answer to the cassette. The first recording
  of a cassette in a run replaces the file, so re-running a suite in record mode refreshes it.
- passthrough: forward, write nothing.
- replay-or-record: replay when a recording matches, else record it (kept for later matches).

Everything written is redacted first (tokens the client sent, the configured real token, the local
and real account ids, emails). Matching redacts incoming requests the same way, so they still match.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Mapping

from emulator.backends.large_bodies import (
    JsonParser,
    answer_bytes,
    line_in_slices,
    load_index,
    normalise_large_json,
    normalise_recorded_large,
    read_large_answer,
    read_large_body,
    read_large_events,
)
from emulator.backends.upstream import Exchange, Finished, Upstream
from emulator.call import Call, Outcome, StreamCut, StreamEvent
from emulator.cassettes import (
    Body,
    Cassette,
    CassetteIndex,
    CassetteStore,
    Interaction,
    InvalidCassetteName,
    NoMatch,
    RecordedRequest,
    RecordedResponse,
    RecordedSession,
    Redactor,
    SSEEvent,
    StreamBreak,
)
from emulator.cassettes.format import SWITCHING_PROTOCOLS
from emulator.cassettes.sessions import SessionPlayer
from emulator.cassettes.store import Identity
from emulator.errors import CFError, ErrorKind
from emulator.gil import collector_paused
from emulator.limits import off_loop, parse_neurons
from emulator.settings import Hints, Mode, Settings

FIX_HINTS = {
    Hints.SERVE: (
        "To fix: re-record the cassette (--mode record or replay-or-record), or make matching ignore a "
        "field that changes on every run with --ignore-field NAME."
    ),
    Hints.PYTEST: (
        "To fix: re-record it (pytest --workers-ai-record-mode=all, or =new_episodes to add the "
        "missing calls), or make matching ignore a field that changes on every run with "
        "--workers-ai-ignore-field NAME or @pytest.mark.workers_ai(ignore_fields=[NAME])."
    ),
}
RECORD_HINTS = {
    Hints.SERVE: "Record it first: serve --mode record (or replay-or-record) against the real API.",
    Hints.PYTEST: "Record it first: pytest --workers-ai-record-mode=once (needs CLOUDFLARE_API_TOKEN "
    "and CLOUDFLARE_ACCOUNT_ID).",
}


# Another process re-recording a cassette is noticed within this delay.
FILE_CHECK_SECONDS = 0.5


# Distinct (credentials, account) pairs whose redactors are kept; a test suite uses a handful.
MAX_REDACTORS = 64

def replayed_outcome(interaction: Interaction, *, real_timing: bool, body: bytes | None = None) -> Outcome:
    """A recorded answer as a rendered Outcome: same status, headers, bytes and SSE chunking. `body`:
    the answer's bytes, built already (`answer_bytes`)."""
    response = interaction.response
    headers = dict(response.headers)
    common = {
        "rendered": True,
        "status": response.status,
        "headers": headers,
        "content_type": response.content_type or "application/octet-stream",
        "neurons": interaction.neurons if response.status < 400 else None,
    }
    if response.events is not None:
        events: list[StreamEvent] = []
        previous = 0.0
        for event in response.events:
            delay = max(0.0, (event.offset_ms - previous) / 1000) if real_timing else 0.0
            previous = event.offset_ms
            events.append(StreamEvent(event.data, delay=delay, raw=event.raw.encode("utf-8")))
        if response.cut is not None:
            wait = max(0.0, (response.cut.offset_ms - previous) / 1000) if real_timing else 0.0
            return Outcome(events=_then_cut(events, response.cut, wait), **common)  # type: ignore[arg-type]
        return Outcome(events=events, **common)  # type: ignore[arg-type]
    return Outcome(body=body if body is not None else response.body_bytes(), **common)  # type: ignore[arg-type]


async def _then_cut(events: list[StreamEvent], cut: StreamBreak, wait: float) -> AsyncIterator[StreamEvent]:
    """A recorded broken stream: its events, then (after the recorded wait) the connection drops."""
    for event in events:
        yield event
    if wait:
        await asyncio.sleep(wait)
    raise StreamCut(f"replaying a recorded stream that broke off ({cut.reason})")


class CassetteBackend:
    """The non-mock modes. `exchange` also serves requests without a model (catalog API, GraphQL)."""

    def __init__(self, settings: Settings, mode: Mode, *, parse_json: JsonParser | None = None) -> None:
        self.settings = settings
        self.parse_json = parse_json
        self.mode = mode
        self.name = mode.value
        self.replays = mode in (Mode.REPLAY, Mode.REPLAY_OR_RECORD)
        self.records = mode in (Mode.RECORD, Mode.REPLAY_OR_RECORD)
        self.forwards = mode is not Mode.REPLAY
        self.store = CassetteStore(settings.resolved_cassette_dir(), max_bytes=settings.max_cassette_bytes)
        self.upstream = Upstream(settings)
        # cassette name → (identity of the file it was built from, replay index)
        self._indexes: dict[str, tuple[Identity, CassetteIndex]] = {}
        self._checked: dict[str, float] = {}  # cassette name → when its file was last looked at
        self._failed: dict[str, tuple[Identity, str]] = {}  # a file that did not load, and why
        self._loading: dict[str, asyncio.Lock] = {}
        self._fresh: set[str] = set()  # cassettes already started in this run (record mode)
        self._write_lock = threading.Lock()
        # Redactors by (secrets, account ids): one per client credential, so each keeps its memo of
        # redacted paths across calls (building one and redacting a path again cost ~30 µs a call).
        self._redactors: dict[tuple[tuple[str, ...], tuple[str, ...]], Redactor] = {}

    # Redaction ---------------------------------------------------------------------------------
    def redactor(self, exchange: Exchange | None = None) -> Redactor:
        secrets = [self.settings.upstream_token or ""]
        accounts = [self.settings.upstream_account_id or ""]
        if exchange is not None:
            secrets += exchange.credentials()
            accounts.append(exchange.account_id)
        key = (tuple(secrets), tuple(accounts))
        redactor = self._redactors.get(key)
        if redactor is None:
            if len(self._redactors) >= MAX_REDACTORS:
                self._redactors.clear()
            redactor = self._redactors[key] = Redactor(secrets=secrets, account_ids=accounts)
        return redactor

    # Replay ------------------------------------------------------------------------------------
    def _name(self) -> str:
        # Read on every call: the control plane may switch cassettes between tests.
        return self.settings.cassette

    def _fresh_index(self, name: str) -> CassetteIndex | None:
        """The loaded index when it is known to match the file; None when the file must be (re)read.

        The file is looked at (stat) at most every FILE_CHECK_SECONDS per cassette: replaying is on
        every request's path, and this process's own recordings update the index directly."""
        cached = self._indexes.get(name)
        if cached is None:
            return None
        now = time.monotonic()
        if now - self._checked.get(name, 0.0) < FILE_CHECK_SECONDS:
            return cached[1]
        try:
            identity = self.store.identity(name)
        except InvalidCassetteName:
            return None
        if identity != cached[0]:
            return None
        self._checked[name] = now
        return cached[1]

    async def index(self, name: str) -> CassetteIndex | None:
        """The replay index of a cassette, rebuilt only when its file changed; None when it has no file.

        Reading and indexing happen on a thread, never on the event loop, one load per cassette at a
        time. A file that failed to load is not read again until it changes (its identity): every
        request meanwhile gets the same 7404 at the cost of a stat."""
        fresh = self._fresh_index(name)
        if fresh is not None:
            return fresh
        async with self._loading.setdefault(name, asyncio.Lock()):
            fresh = self._fresh_index(name)
            if fresh is not None:
                return fresh
            try:
                identity = self.store.identity(name)
            except InvalidCassetteName as exc:
                raise CFError(ErrorKind.NO_CASSETTE_MATCH, detail=str(exc)) from None
            if identity is None:
                self._indexes.pop(name, None)
                return None
            failed = self._failed.get(name)
            if failed is not None and failed[0] == identity:
                raise CFError(ErrorKind.NO_CASSETTE_MATCH, detail=failed[1])
            try:
                # Read and indexed on threads; long lines parsed and normalised in slices. The
                # interactions are frozen (below) once built; until then the collector would walk
                # them again and again as they grow.
                with collector_paused():
                    loaded, index = await load_index(
                        self.store, name, volatile=frozenset(self.settings.ignore_fields),
                        redactor=self.redactor(), parse_json=self.parse_json)
                    gc.freeze()
            except (InvalidCassetteName, ValueError) as exc:  # CassetteFormatError, CassetteTooLarge
                self._failed[name] = (identity, str(exc))
                raise CFError(ErrorKind.NO_CASSETTE_MATCH, detail=str(exc)) from None
            except FileNotFoundError:
                self._indexes.pop(name, None)
                return None
            # The index keeps the identity it was read at, so a later change of the file is noticed.
            self._indexes[name] = (loaded, index)
            self._failed.pop(name, None)
            self._checked[name] = time.monotonic()
        # A cassette of thousands of interactions is hundreds of thousands of long-lived objects:
        # left to the collector, every full collection walks them all (0.35 s pauses with 10,000
        # interactions). Frozen, they are skipped; they are still freed by reference counting.
        gc.freeze()
        return index

    async def _replay(self, exchange: Exchange, name: str, *, required: bool) -> Outcome | None:
        index = await self.index(name)
        if index is None:
            if not required:
                return None
            raise CFError(
                ErrorKind.NO_CASSETTE_MATCH,
                detail=(
                    f"cassette {name!r} does not exist ({self.store.path(name)}). "
                    + RECORD_HINTS[self.settings.hints]
                ),
            )
        args = (exchange.method, exchange.path, exchange.query, exchange.body, exchange.content_type)
        # Redacted with this request's own credentials, exactly as recording it would have been.
        redactor = self.redactor(exchange)
        try:
            large = await normalise_large_json(index, exchange, redactor, self.parse_json)
            if large is not None:
                played = await asyncio.to_thread(index.take, large, required=required)
            else:
                # Normalising a large body (parse, redaction walk, canonical dump) grows with it: on a
                # worker thread (the index takes its lock to pick the answer).
                played = await off_loop(len(exchange.body), index.play, *args, required=required,
                                        redactor=redactor)
        except NoMatch as miss:
            raise CFError(
                ErrorKind.NO_CASSETTE_MATCH,
                detail=f"{miss}\n{FIX_HINTS[self.settings.hints]}") from None
        if played is None:
            return None
        found, final = played
        outcome = replayed_outcome(found, real_timing=self.settings.replay_timing == "real",
                                   body=await answer_bytes(found.response))
        # From now on this request replays this same answer: the server may keep it rendered.
        outcome.repeatable = final and outcome.events is None
        return outcome

    # Record ------------------------------------------------------------------------------------
    def _recorder(self, exchange: Exchange, name: str) -> Finished:
        async def finished(status: int, headers: Mapping[str, str], body: bytes,
                           events: list[SSEEvent] | None, cut: StreamBreak | None) -> None:
            # A large JSON request body or answer is parsed, and its cassette line serialised, in
            # slices on the loop (large_bodies.py); the redaction walk grows with the bodies: on a
            # worker thread when they are large.
            request_body = await read_large_body(exchange, self.parse_json)
            answer_body = await read_large_answer(headers, body, events, self.parse_json,
                                                  self.redactor(exchange))
            redacted_events = await read_large_events(events, self.parse_json, self.redactor(exchange))
            # An event's redaction grows with it too (a 20 MB event held /health 400-800 ms inline).
            size = len(exchange.body) + len(body) + sum(len(event.raw) for event in events or ())
            interaction = await off_loop(size, self._interaction, exchange, status, headers, body,
                                         events if redacted_events is None else redacted_events, cut,
                                         request_body, answer_body,
                                         events_redacted=redacted_events is not None)
            sliced = request_body is not None or answer_body is not None
            line = await line_in_slices(interaction) if sliced else None
            await self._store(name, interaction, line=line, large=request_body is not None)

        return finished

    def _interaction(self, exchange: Exchange, status: int, headers: Mapping[str, str], body: bytes,
                     events: list[SSEEvent] | None, cut: StreamBreak | None,
                     request_body: Body | None = None, answer_body: Body | None = None, *,
                     events_redacted: bool = False) -> Interaction:
        """The exchange as the cassette stores it, redacted; `request_body` is the request's body
        read already (`read_large_body`), `answer_body` the answer's, read and redacted already
        (`read_large_answer`); `events_redacted`: the events are redacted already
        (`read_large_events`)."""
        redactor = self.redactor(exchange)
        request = RecordedRequest.build(
            exchange.method, exchange.path, exchange.query, exchange.headers.items(),
            request_body if request_body is not None else exchange.body,
        )
        answer = answer_body if answer_body is not None else body
        response = RecordedResponse.build(status, headers.items(), answer, events=events, cut=cut)
        return Interaction(
            request=redactor.redact_request(request),
            response=redactor.redact_response(response, body_redacted=answer_body is not None,
                                              events_redacted=events_redacted),
            neurons=parse_neurons(headers.get("cf-ai-neurons")),
        )

    async def _store(self, name: str, interaction: Interaction, *, line: bytes | None = None,
                     large: bool = False) -> None:
        """Write an interaction (`line`: its cassette line, built already); `large`: its request
        body is a large JSON document, normalised in slices for the live index."""
        # fsync takes milliseconds: keep it off the event loop.
        before, after = await asyncio.to_thread(self._write, name, interaction, line)
        if self.replays:
            await self._remember(name, before, after, interaction, large=large)

    def _write(self, name: str, interaction: Interaction, line: bytes | None
               ) -> tuple[Identity | None, Identity]:
        with self._write_lock:
            if self.mode is Mode.RECORD and name not in self._fresh:
                self._fresh.add(name)
                before = self.store.identity(name)
                self.store.save(Cassette(name=name, source="recorded", interactions=[interaction]),
                                last_line=line)
                after = self.store.identity(name)
                assert after is not None
                return before, after
            return self.store.append(name, interaction, line=line)

    async def _remember(self, name: str, before: Identity | None, after: Identity, interaction: Interaction,
                        *, large: bool) -> None:
        # Keep the live index (and its replay cursors) instead of reading the file again, when the
        # file was exactly what the index was built from; otherwise the next replay reloads it.
        cached = self._indexes.get(name)
        if cached is None or cached[0] != before:
            return
        index = cached[1]
        normalised = None
        if large:
            normalised = await normalise_recorded_large(interaction.request, volatile=index.volatile,
                                                        volatile_query=index.volatile_query)
            if self._indexes.get(name) != (before, index):
                return  # the file or the index changed meanwhile: the next replay reloads it
        index.add(interaction, normalised)
        self._indexes[name] = (after, index)

    # WebSocket sessions ------------------------------------------------------------------------
    async def session_recordings(self, exchange: Exchange) -> list[Interaction] | None:
        """The recordings of a WebSocket upgrade (the next in recorded order first), or None when
        the mode does not replay or replay-or-record has none. In replay, none is a 7404."""
        if not self.replays:
            return None
        name = self._name()
        required = not self.records
        index = await self.index(name)
        if index is None:
            if not required:
                return None
            raise CFError(ErrorKind.NO_CASSETTE_MATCH, detail=f"cassette {name!r} does not exist "
                          f"({self.store.path(name)}). " + RECORD_HINTS[self.settings.hints])
        try:
            return index.candidates(exchange.method, exchange.path, exchange.query,
                                    redactor=self.redactor(exchange))
        except NoMatch as miss:
            if not required:
                return None
            detail = f"{miss}\n{FIX_HINTS[self.settings.hints]}"
            raise CFError(ErrorKind.NO_CASSETTE_MATCH, detail=detail) from None

    def session_player(self, exchange: Exchange, recordings: list[Interaction]) -> SessionPlayer:
        """Plays the recorded sessions of an upgrade to its client (cassettes/sessions.py)."""
        return SessionPlayer(self._name(), recordings,
                             normalise_text=self.redactor(exchange).redact_frame_text,
                             volatile=frozenset(self.settings.ignore_fields))

    def refusal_recorder(self, exchange: Exchange) -> Finished | None:
        """Records an upgrade the real API refused (an ordinary HTTP answer), in the recording modes."""
        return self._recorder(exchange, self._name()) if self.records else None

    async def record_session(self, exchange: Exchange, session: RecordedSession, neurons: float | None
                             ) -> None:
        """Store a relayed WebSocket session (redacted) in the recording modes."""
        if not self.records:
            return
        redactor = self.redactor(exchange)
        request = RecordedRequest.build(exchange.method, exchange.path, exchange.query,
                                        exchange.headers.items(), b"")
        response = RecordedResponse.build(SWITCHING_PROTOCOLS, {}, b"")
        interaction = Interaction(
            request=redactor.redact_request(request),
            response=redactor.redact_response(response),
            neurons=neurons,
            session=redactor.redact_session(session),
        )
        await self._store(self._name(), interaction)

    # Backend -----------------------------------------------------------------------------------
    async def handle(self, call: Call) -> Outcome:
        return await self.exchange(Exchange.from_call(call))

    async def exchange(self, exchange: Exchange) -> Outcome:
        """Answer one original request according to the mode."""
        name = self._name()
        if self.replays:
            outcome = await self._replay(exchange, name, required=not self.records)
            if outcome is not None:
                return outcome
        return await self.upstream.forward(exchange, self._recorder(exchange, name) if self.records else None)

    def answer_token(self) -> object | None:
        """Replayed answers stay valid while the cassette's index does (a changed file, or another
        cassette, gives a new index); forwarded ones are never kept."""
        if not self.replays:
            return None
        # Only an index already loaded and still matching its file: loading is the handler's job
        # (on a thread), and a changed file must not keep serving the old answers.
        return self._fresh_index(self._name())

    async def close(self) -> None:
        await self.upstream.close()

