"""Record mode stores a large JSON body's interaction with its body parsed and its line serialised in
slices (`backends/large_bodies.read_large_body`, `line_in_slices`), and loading reads such long lines
in slices (`load_index`). The cassette file must be byte for byte what the one-call path writes
(`CassetteStore.append` and `interaction_line`), and the loaded index the one the whole path builds,
or recordings would change, or stop matching, once a body crosses 1 MiB. The size thresholds and
slice sizes are shrunk as in tests/test_large_body_normalisation.py, so generated bodies of a few
hundred bytes take the sliced paths and are cut into many slices.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from emulator.backends import cassette as cassette_backend
from emulator.backends import large_bodies
from emulator.backends.cassette import CassetteBackend
from emulator.backends.large_bodies import load_index
from emulator.backends.upstream import Exchange
from emulator.cassettes import (
    Body,
    CassetteFormatError,
    CassetteIndex,
    CassetteStore,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    Redactor,
    redact,
    splice,
)
from emulator.cassettes.format import UNPARSED, interaction_line, load_cassette
from emulator.server import dense_json
from emulator.server.inputs import parse_json_body
from emulator.settings import Mode, Settings
from tests.test_large_body_normalisation import (
    ACCOUNT,
    BODY,
    JSON,
    SETTINGS,
    TOKEN,
    VOLATILE,
    _wire,
    parser,  # noqa: F401 (a fixture: both sliced parsers)
    small_slices,  # noqa: F401 (a fixture: the shrunk thresholds)
)

pytestmark = pytest.mark.usefixtures("small_slices")

PATH = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
HEADERS = CIMultiDict({"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
ANSWER_HEADERS = {"content-type": "application/json", "cf-ai-neurons": "1.5", "cf-ai-req-id": "abc"}
ANSWER_BODY = b'{"result":{},"success":true}'
# Every timestamp in a file: the two recordings are made at different instants.
_STAMP = re.compile(rb'"(recorded_at|created_at)":"[^"]*"')


@pytest.fixture
def lines_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes | None]]:
    """The lines `line_in_slices` built (None: it gave up), so a test knows the sliced path ran."""
    built: list[bytes | None] = []
    original = large_bodies.line_in_slices

    async def recording(interaction: Interaction) -> bytes | None:
        line = await original(interaction)
        built.append(line)
        return line

    monkeypatch.setattr(cassette_backend, "line_in_slices", recording)
    yield built


def _record(directory: Path, calls: list[tuple[bytes, bytes]], *, sliced: bool,
            answer_headers: dict[str, str] = ANSWER_HEADERS) -> bytes:
    """The cassette file one record-mode run writes for these (request body, answer) calls (the
    first recording writes the file, the next ones append), timestamps blanked."""
    settings = Settings(cassette="t", cassette_dir=directory, upstream_token="cf-real-token-0123456789")
    backend = CassetteBackend(settings, Mode.RECORD, parse_json=parse_json_body if sliced else None)

    async def run() -> None:
        for body, answer in calls:
            exchange = Exchange("POST", PATH, {"b": "2", "a": TOKEN}, HEADERS, body, ACCOUNT)
            await backend._recorder(exchange, "t")(200, answer_headers, answer, None, None)

    asyncio.run(run())
    return _STAMP.sub(rb'"\1":"T"', (directory / "t.json").read_bytes())


ANSWER = st.builds(lambda value, spaced: _wire(value, spaced), JSON, st.booleans())


@pytest.mark.usefixtures("parser")
@SETTINGS
@given(value=BODY, spaced=st.booleans(), answers=st.lists(ANSWER, min_size=1, max_size=3))
def test_a_large_body_is_recorded_byte_for_byte_as_in_one_call(
    lines_built: list[bytes | None], tmp_path_factory: pytest.TempPathFactory, value: Any, spaced: bool,
    answers: list[bytes],
) -> None:
    lines_built.clear()
    body = _wire(value, spaced)
    calls = [(body, answer) for answer in answers]
    sliced = _record(tmp_path_factory.mktemp("sliced"), calls, sliced=True)
    whole = _record(tmp_path_factory.mktemp("whole"), calls, sliced=False)
    assert len(lines_built) == len(answers) and None not in lines_built  # the sliced path wrote them
    assert sliced == whole
    assert TOKEN.encode() not in sliced


def _load_both(store: CassetteStore) -> tuple[CassetteIndex, CassetteIndex]:
    redactor = Redactor(account_ids=[ACCOUNT])
    _identity, sliced = asyncio.run(load_index(store, "t", volatile=VOLATILE, redactor=redactor,
                                               parse_json=parse_json_body))
    whole = CassetteIndex(load_cassette(store.read("t")[1]), volatile=VOLATILE, redactor=redactor)
    return sliced, whole


@pytest.mark.usefixtures("parser")
@SETTINGS
@given(values=st.lists(BODY, min_size=1, max_size=3), tail=st.sampled_from(["", "torn", "unended"]))
def test_long_lines_load_into_the_index_the_whole_path_builds(
    tmp_path_factory: pytest.TempPathFactory, values: list[Any], tail: str,
) -> None:
    directory = tmp_path_factory.mktemp("load")
    _record(directory, [(_wire(value, False), ANSWER_BODY) for value in values], sliced=False)
    store = CassetteStore(directory)
    path = directory / "t.json"
    data = path.read_bytes()
    last = data[data.rindex(b"\n", 0, len(data) - 1) + 1:]
    if tail == "torn":  # a writer killed mid-append: ignored on load
        path.write_bytes(data + last[: len(last) // 2])
    elif tail == "unended":  # a whole line whose newline was not written yet: kept
        path.write_bytes(data + last[:-1])
    sliced, whole = _load_both(store)
    assert sliced.cassette.interactions == whole.cassette.interactions
    assert len(sliced.cassette.interactions) == len(values) + (tail == "unended")
    assert sliced._normalised == whole._normalised  # the match keys, canonical bodies, in order


@pytest.mark.parametrize("line", [
    b'{"request": {"method": "POST"',  # not JSON
    orjson.dumps({"request": {"method": "POST", "path": "/x"}, "response": {"status": 99999}}),
    b"[1, 2, 3]",
], ids=["not-json", "bad-status", "not-an-object"])
def test_an_invalid_long_line_is_refused_with_the_whole_paths_error(tmp_path: Path, line: bytes) -> None:
    _record(tmp_path, [(b'{"prompt": "hi"}', ANSWER_BODY)], sliced=False)
    path = tmp_path / "t.json"
    path.write_bytes(path.read_bytes() + line + b"\n")
    store = CassetteStore(tmp_path)
    with pytest.raises(CassetteFormatError) as whole:
        load_cassette(path.read_bytes(), origin=str(path))
    with pytest.raises(CassetteFormatError) as sliced:
        asyncio.run(load_index(store, "t", volatile=frozenset(), redactor=Redactor(),
                               parse_json=parse_json_body))
    assert str(sliced.value) == str(whole.value)
    assert "not a valid cassette" in str(sliced.value)


def test_the_line_of_a_parsed_body_is_interaction_line() -> None:
    """`line_in_slices` on an interaction as record mode builds it equals `interaction_line`."""
    from emulator.cassettes import RecordedRequest, RecordedResponse

    body = {"image": list(range(40)), "prompt": "hi", "options": {"a": [1.5] * 9, "n": None}}
    answer = {"result": {"data": list(range(9))}}
    interaction = Interaction(
        request=RecordedRequest.build("POST", PATH, {}, {"content-type": "application/json"},
                                      orjson.dumps(body)),
        response=RecordedResponse.build(200, ANSWER_HEADERS, orjson.dumps(answer)),
    )
    assert asyncio.run(large_bodies.line_in_slices(interaction)) == interaction_line(interaction)


# Text as recorded answers hold it: escapes (quotes, backslashes, control characters), accents, CJK,
# emoji (a character of 4 UTF-8 bytes), and what JSON writes as it is.
LINE_TEXT = st.text(alphabet=st.sampled_from('ab ,;"\\\n\t\x00\x1fé日🙂\u2028/<'), max_size=40) | st.text()


@SETTINGS
@given(request_text=LINE_TEXT, answer_text=LINE_TEXT, answer_data=st.binary(max_size=40),
       binary=st.booleans())
def test_a_line_with_long_strings_spliced_in_is_the_line_one_call_writes(
    request_text: str, answer_text: str, answer_data: bytes, binary: bool,
) -> None:
    """A text request and a text or base64 answer past `splice.LONG_STRING_CHARS` (shrunk), encoded
    a few characters at a time (`splice.SLICE_CHARS`): `interaction_line` and `line_in_slices` are
    byte for byte `orjson.dumps` of the interaction's `model_dump`. A text answer held as its UTF-8
    bytes (`Body.of_utf8_text`, sliced a few bytes at a time before a character's first byte) makes
    the same line."""
    answer = (Body.from_bytes(b"\x89PNG" + answer_data, "image/png") if binary
              else Body(encoding="text", text=answer_text))
    interaction = Interaction(
        request=RecordedRequest(method="POST", path=PATH, body=Body(encoding="text", text=request_text)),
        response=RecordedResponse(status=200, headers={"content-type": "text/plain"}, body=answer),
    )
    whole = orjson.dumps(interaction.model_dump(mode="json", exclude_none=True, by_alias=True)) + b"\n"
    held = [interaction]
    with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate has no UTF-8
        if not binary:
            utf8 = Body.of_utf8_text(answer_text.encode())
            held.append(interaction.model_copy(update={
                "response": interaction.response.model_copy(update={"body": utf8})}))
    with mock.patch.object(splice, "LONG_STRING_CHARS", 4), mock.patch.object(splice, "SLICE_CHARS", 3):
        for each in held:
            assert interaction_line(each) == whole
            assert asyncio.run(large_bodies.line_in_slices(each)) == whole


def test_replay_or_record_indexes_a_large_recording_as_loading_it_would(tmp_path: Path) -> None:
    """replay-or-record adds what it records to the live index (normalised in slices for a large
    body) rather than reading the file again; that entry must be the one loading the file gives."""
    settings = Settings(cassette="t", cassette_dir=tmp_path, ignore_fields=["seed"])
    backend = CassetteBackend(settings, Mode.REPLAY_OR_RECORD, parse_json=parse_json_body)
    body = orjson.dumps({"seed": 3, "image": list(range(30)), "prompt": f"with {TOKEN}"})

    async def run() -> tuple[CassetteIndex, CassetteIndex | None]:
        first = Exchange("POST", PATH, {}, HEADERS, b'{"prompt": "small"}', ACCOUNT)
        await backend._recorder(first, "t")(200, ANSWER_HEADERS, ANSWER_BODY, None, None)
        live = await backend.index("t")  # loaded from the file
        assert live is not None
        large = Exchange("POST", PATH, {}, HEADERS, body, ACCOUNT)
        await backend._recorder(large, "t")(200, ANSWER_HEADERS, ANSWER_BODY, None, None)
        return live, await backend.index("t")

    live, after = asyncio.run(run())
    assert after is live and len(live) == 2  # the recording was added, the file not read again
    loaded = CassetteIndex(load_cassette((tmp_path / "t.json").read_bytes()), volatile=frozenset({"seed"}))
    assert live._normalised == loaded._normalised


def test_secrets_nested_in_a_large_parsed_body_are_redacted() -> None:
    """The sliced parser hides every container it builds from the cycle collector; redaction shares
    only those holding nothing but numbers, booleans and nulls, and walks lists of objects, lists of
    lists and lists of strings like any other value."""
    secret = "sk-live-0123456789abcdef0123456789"
    item = {"role": "user", "content": [{"type": "text", "text": f"Bearer {secret}"}], "api_key": secret}
    body = {"messages": [item] * 20_000, "nested": [[f"Bearer {secret}", 1]] * 20_000,
            "image": list(range(300_000))}
    raw = orjson.dumps(body)
    assert len(raw) > 1024 * 1024
    parsed = asyncio.run(parse_json_body(raw))
    assert parsed == body
    redacted = Redactor().redact_json(parsed)
    assert secret not in orjson.dumps(redacted).decode()
    assert redacted["image"] is parsed["image"]  # numbers only: shared, not copied


@pytest.fixture
def answers_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether `read_large_answer` read each answer (False: it left it to the whole path)."""
    read: list[bool] = []
    original = large_bodies.read_large_answer

    async def recording(*args: Any) -> Any:
        body = await original(*args)
        read.append(body is not None)
        return body

    monkeypatch.setattr(cassette_backend, "read_large_answer", recording)
    yield read


@pytest.mark.usefixtures("parser")
@SETTINGS
@given(answers=st.lists(st.tuples(BODY, st.booleans()), min_size=1, max_size=3))
def test_a_large_answer_is_recorded_byte_for_byte_as_in_one_call(
    answers_read: list[bool], lines_built: list[bytes | None], tmp_path_factory: pytest.TempPathFactory,
    answers: list[tuple[Any, bool]],
) -> None:
    """A JSON answer is parsed in slices and checked against its compact serialisation in slices,
    kept as JSON when equal, else as text (spaced, or with `\\uXXXX` escapes), that text redacted a
    few characters at a time (`redact.TEXT_PIECE`, shrunk); the file is what the one-call path
    writes."""
    answers_read.clear()
    lines_built.clear()
    calls = [(b'{"prompt": "hi"}', _wire(value, spaced)) for value, spaced in answers]
    with mock.patch.object(redact, "LONG_TEXT", 8), mock.patch.object(redact, "TEXT_PIECE", 3), \
            mock.patch.object(splice, "LONG_STRING_CHARS", 8), mock.patch.object(splice, "SLICE_CHARS", 5):
        sliced = _record(tmp_path_factory.mktemp("sliced"), calls, sliced=True)
    whole = _record(tmp_path_factory.mktemp("whole"), calls, sliced=False)
    assert sliced == whole
    assert answers_read[:len(calls)] == [True] * len(calls)  # every answer took the sliced path
    assert TOKEN.encode() not in sliced


# Text answers: prose with the redaction pieces' cut characters, non-ASCII (accents, CJK, emoji),
# what the redactor replaces (the token, a bearer token, an account id, an email), and JSON texts
# (a `text/plain` answer that opens a JSON value is looked at for secrets hidden by escapes).
PROSE = st.lists(st.sampled_from([
    "word 0001234", ", ", "some words here", "; ", "\n", "café", "日本の言葉", "🙂", "\u2028", '"', "\\",
    TOKEN, f"Bearer {TOKEN}", f"accounts/{ACCOUNT}/ai", "me@example.com", "{", "}", "[", "]",
]), max_size=30).map("".join)
TEXT_ANSWER = PROSE | st.builds(lambda value, spaced: _wire(value, spaced).decode(), JSON, st.booleans()) \
    | st.just('{"echo": "you sent \\u0074' + TOKEN[1:] + '"}')


@pytest.mark.usefixtures("parser")
@SETTINGS
@given(answers=st.lists(TEXT_ANSWER, min_size=1, max_size=3))
def test_a_large_text_answer_is_recorded_byte_for_byte_as_in_one_call(
    answers_read: list[bool], lines_built: list[bytes | None], tmp_path_factory: pytest.TempPathFactory,
    answers: list[str],
) -> None:
    """A `text/plain` answer is decoded and redacted a piece at a time (`redact.TEXT_PIECE` and
    `redact.SCAN_CHARS`, shrunk) and its line spliced a few characters at a time; the file is what
    the one-call path writes, JSON texts hiding the token behind an escape included; replayed, each
    answer's bytes are what the whole path gives."""
    answers_read.clear()
    lines_built.clear()
    headers = {**ANSWER_HEADERS, "content-type": "text/plain; charset=utf-8"}
    calls = [(b'{"prompt": "hi"}', answer.encode()) for answer in answers]
    with mock.patch.object(redact, "LONG_TEXT", 8), mock.patch.object(redact, "TEXT_PIECE", 3), \
            mock.patch.object(redact, "SCAN_CHARS", 4), mock.patch.object(splice, "LONG_STRING_CHARS", 8), \
            mock.patch.object(splice, "SLICE_CHARS", 5):
        sliced = _record(tmp_path_factory.mktemp("sliced"), calls, sliced=True, answer_headers=headers)
    whole_directory = tmp_path_factory.mktemp("whole")
    whole = _record(whole_directory, calls, sliced=False, answer_headers=headers)
    assert sliced == whole
    assert answers_read[:len(calls)] == [len(answer.encode()) > 0 for answer in answers]  # the sliced path
    assert TOKEN.encode() not in sliced
    for interaction in load_cassette((whole_directory / "t.json").read_bytes()).interactions:
        with mock.patch.object(large_bodies, "TEXT_SLICE_CHARS", 5):
            replayed = asyncio.run(large_bodies.answer_bytes(interaction.response))
        assert replayed in (None, interaction.response.body_bytes())  # None: the caller takes body_bytes()


@pytest.mark.usefixtures("parser")
@SETTINGS
@given(values=st.lists(BODY, min_size=1, max_size=3))
def test_a_large_answer_replays_the_bytes_the_whole_path_gives(tmp_path_factory: pytest.TempPathFactory,
                                                               values: list[Any]) -> None:
    """Recorded compact (kept as JSON) and spaced (as text) in turn, replayed in slices, a few
    characters of text at a time (`TEXT_SLICE_CHARS`, shrunk)."""
    directory = tmp_path_factory.mktemp("answers")
    calls = [(b'{"prompt": "hi"}', _wire(value, spaced=n % 2 == 1)) for n, value in enumerate(values)]
    _record(directory, calls, sliced=False)
    sliced, whole = _load_both(CassetteStore(directory))
    assert sliced.cassette.interactions == whole.cassette.interactions
    for interaction in sliced.cassette.interactions:
        with mock.patch.object(large_bodies, "TEXT_SLICE_CHARS", 5):
            replayed = asyncio.run(large_bodies.answer_bytes(interaction.response))
        assert interaction.response.body is not None
        if interaction.response.body.encoding in ("json", "text"):
            assert replayed == interaction.response.body_bytes()
        else:
            assert replayed is None  # the caller takes body_bytes()


@pytest.mark.usefixtures("parser")
@SETTINGS
@given(values=st.lists(BODY, min_size=0, max_size=3), pretty=st.booleans())
def test_a_version_1_file_loads_in_slices_into_the_index_the_whole_path_builds(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, values: list[Any],
    pretty: bool,
) -> None:
    """A one-document cassette (pretty as `dump_cassette` writes it, or compact as a hand-written one
    may be) is parsed in slices and validated: the interactions and match keys the whole path gives."""
    from emulator.cassettes.format import dump_cassette

    read: list[bool] = []
    original = large_bodies.document_cassette

    def spy(raw: bytes, document: Any, origin: str) -> Any:
        read.append(document is not UNPARSED)
        return original(raw, document, origin)

    monkeypatch.setattr(large_bodies, "document_cassette", spy)
    directory = tmp_path_factory.mktemp("v1")
    _record(directory, [(_wire(value, False), _wire(value, False)) for value in values] or
            [(b'{"prompt": "hi"}', ANSWER_BODY)], sliced=False)
    path = directory / "t.json"
    cassette = load_cassette(path.read_bytes())
    if not values:
        cassette.interactions = []
    document = dump_cassette(cassette)
    path.write_bytes(document if pretty else orjson.dumps(orjson.loads(document)))
    sliced, whole = _load_both(CassetteStore(directory))
    assert read == [True]  # the document was parsed in slices
    assert sliced.cassette == whole.cassette
    assert sliced._normalised == whole._normalised


@pytest.mark.parametrize("document", [
    b'{"format_version": 1, "name": "t", "interactions": [',  # not JSON
    b'{"format_version": 1, "name": "t", "interactions": [{"request": {"method": "POST"}}]}',
    b'{"format_version": 2, "name": "t", "interactions": []}',
    b'[1, 2, 3]',
], ids=["not-json", "bad-interaction", "version-2-document", "not-an-object"])
def test_an_invalid_version_1_file_is_refused_with_the_whole_paths_error(tmp_path: Path,
                                                                         document: bytes) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(document)
    with pytest.raises(CassetteFormatError) as whole:
        load_cassette(document, origin=str(path))
    with pytest.raises(CassetteFormatError) as sliced:
        asyncio.run(load_index(CassetteStore(tmp_path), "t", volatile=frozenset(), redactor=Redactor(),
                               parse_json=parse_json_body))
    assert str(sliced.value) == str(whole.value)


@SETTINGS
@given(answers=st.lists(TEXT_ANSWER.filter(lambda answer: len(answer.encode()) > 16), min_size=1, max_size=3))
def test_a_long_text_answer_is_held_as_its_utf8_bytes_from_record_to_replay(
    tmp_path_factory: pytest.TempPathFactory, parser: str, answers: list[str],  # noqa: F811 (the fixture)
) -> None:
    """A long text answer is never one Python string (`Body.of_utf8_text`): recorded, the body the
    store gets holds the redacted text's UTF-8 bytes; loaded in slices, the line's text longer than
    a piece (`dense_json.PIECE_BYTES`, shrunk) comes as bytes too when dense_json reads the line (the
    `utf8_at` keys; the push parser gives a str), and the interactions equal the whole path's, their
    answers replaying its bytes."""
    headers = {**ANSWER_HEADERS, "content-type": "text/plain; charset=utf-8"}
    redactor = Redactor(secrets=[TOKEN], account_ids=[ACCOUNT])
    for answer in answers:
        stored = asyncio.run(large_bodies.read_large_answer(headers, answer.encode(), None, parse_json_body,
                                                            redactor))
        assert stored is not None
        whole = redactor.redact_body(Body.from_bytes(answer.encode(), headers["content-type"], exact=True))
        assert stored == whole
        if stored.encoding == "text":  # else a JSON text hiding the token behind an escape
            assert stored.utf8 is not None and stored.text is None
        # Redacted again (a body held as bytes), as the text would be.
        assert redactor.redact_body(Body.of_utf8_text(answer.encode())) == whole
    directory = tmp_path_factory.mktemp("utf8")
    _record(directory, [(b'{"prompt": "hi"}', answer.encode()) for answer in answers], sliced=True,
            answer_headers=headers)
    sliced, whole_index = _load_both(CassetteStore(directory))
    assert sliced.cassette.interactions == whole_index.cassette.interactions
    for interaction, whole_interaction in zip(sliced.cassette.interactions, whole_index.cassette.interactions,
                                              strict=True):
        body, whole_body = interaction.response.body, whole_interaction.response.body
        assert body is not None and whole_body is not None
        long = whole_body.text is not None and len(orjson.dumps(whole_body.text)) > dense_json.PIECE_BYTES
        if parser == "dense" and long:
            assert body.utf8 is not None and body.text is None
        replayed = asyncio.run(large_bodies.answer_bytes(interaction.response))
        assert replayed in (None, interaction.response.body_bytes())
    for interaction in whole_index.cassette.interactions:
        assert interaction.response.body is not None and interaction.response.body.utf8 is None
