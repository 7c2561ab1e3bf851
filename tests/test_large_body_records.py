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
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from emulator.cassettes import CassetteFormatError, CassetteIndex, CassetteStore, Interaction, Redactor
from emulator.cassettes.format import interaction_line, load_cassette
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


def _record(directory: Path, calls: list[tuple[bytes, bytes]], *, sliced: bool) -> bytes:
    """The cassette file one record-mode run writes for these (request body, answer) calls (the
    first recording writes the file, the next ones append), timestamps blanked."""
    settings = Settings(cassette="t", cassette_dir=directory, upstream_token="cf-real-token-0123456789")
    backend = CassetteBackend(settings, Mode.RECORD, parse_json=parse_json_body if sliced else None)

    async def run() -> None:
        for body, answer in calls:
            exchange = Exchange("POST", PATH, {"b": "2", "a": TOKEN}, HEADERS, body, ACCOUNT)
            await backend._recorder(exchange, "t")(200, ANSWER_HEADERS, answer, None, None)

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


@given(lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=6),
       cuts=st.lists(st.integers(0, 200), max_size=6), copy_bytes=st.integers(1, 8), ended=st.booleans())
def test_lines_split_from_slices_are_one_splits(lines: list[bytes], cuts: list[int], copy_bytes: int,
                                                ended: bool) -> None:
    """`format._split_slices` splits the file as read, in slices cut anywhere (a newline at a
    slice's edge, empty slices), and copies each line a few bytes at a time: the lines are
    `raw.split(b"\\n")`'s, an empty last one (a file ending in its newline) included."""
    from emulator.cassettes import format as cassette_format

    raw = b"\n".join(lines) + (b"\n" if ended else b"")
    edges = sorted({min(cut, len(raw)) for cut in cuts})
    slices = [raw[a:b] for a, b in zip([0, *edges], [*edges, len(raw)], strict=True)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cassette_format, "_COPY_SLICE_BYTES", copy_bytes)
        assert cassette_format._split_slices(slices) == raw.split(b"\n")
    assert slices == []


@pytest.mark.parametrize("size", [0, 1, 8, 9, 10, 17, 18, 100])
def test_a_large_file_is_read_in_slices_as_one_read_does(tmp_path: Path, size: int) -> None:
    """`CassetteStore.read` reads a file of READ_SLICE_BYTES or more a slice at a time (9 bytes
    here, the `small_slices` fixture): the same bytes, sizes on and either side of a slice's edge."""
    data = bytes(range(size))
    (tmp_path / "t.json").write_bytes(data)
    store = CassetteStore(tmp_path)
    assert store.read("t")[1] == data
    slices = store.read_slices("t")[1]
    assert b"".join(slices) == data and len(slices) == max(1, -(-size // 9))


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
