"""The `serve` banner counts a cassette's interactions before the server listens and after it stops
(`launch/banner.interactions_in`, `cassettes/format.count_interactions`): the count a load gives,
without parsing the interactions of a version-2 file (one interaction per line), where parsing and
validating two image recordings took ~1 s on the main thread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from emulator.cassettes import Interaction, RecordedRequest, RecordedResponse
from emulator.cassettes import format as cassette_format
from emulator.cassettes.format import (
    Cassette,
    dump_cassette,
    dump_cassette_lines,
    interaction_line,
    load_cassette,
)
from emulator.launch.banner import interactions_in
from tests.conftest import ACCOUNT
from tests.serving import serve

PATH = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
JSON_TYPE = {"content-type": "application/json"}


def _interaction(prompt: str, image: bool = False) -> Interaction:
    body: dict[str, Any] = {"prompt": prompt, **({"image": [0]} if image else {})}
    return Interaction(
        request=RecordedRequest.build("POST", PATH, {}, JSON_TYPE, orjson.dumps(body)),
        response=RecordedResponse.build(200, JSON_TYPE, b'{"result":{"response":"hi"},"success":true}'),
    )


def _lines(count: int) -> bytes:
    return dump_cassette_lines(Cassette(name="c", interactions=[_interaction(f"p{i}") for i in range(count)]))


def _loaded(path: Path) -> int:
    """What a load gives: its interactions, or 0 for a file it refuses."""
    try:
        return len(load_cassette(path.read_bytes(), origin=str(path)).interactions)
    except ValueError:
        return 0


LINE = interaction_line(_interaction("tail"))
VARIED = {
    "header-only": _lines(0),
    "one": _lines(1),
    "three": _lines(3),
    "torn-tail": _lines(2) + LINE[: len(LINE) // 2],
    "torn-tail-ending-in-a-brace": _lines(2) + LINE[: LINE.index(b"}") + 1],
    "unended-tail": _lines(2) + LINE[:-1],
    "unended-tail-with-spaces": _lines(2) + LINE[:-1] + b"  ",
    "blank-lines": _lines(2) + b"\n  \n\t\n" + LINE + b"\n\n",
    "blank-tail": _lines(2) + b"   ",
    "spaced-header": _lines(2).replace(b'{"format_version":2', b'{ "format_version": 2', 1),
    "version-1": dump_cassette(Cassette(name="c", interactions=[_interaction(f"p{i}") for i in range(3)])),
    "version-1-empty": dump_cassette(Cassette(name="c")),
    "version-1-compact": orjson.dumps(json.loads(dump_cassette(Cassette(name="c",
                                                                        interactions=[_interaction("x")])))),
    "version-1-bad-interaction": b'{"format_version": 1, "name": "c", "interactions": [{"request": {}}]}',
    "version-2-document": b'{"format_version": 2, "name": "c", "interactions": []}',
    "header-without-name": b'{"format_version":2}\n' + LINE,
    "header-with-interactions": b'{"format_version":2,"name":"c","interactions":[]}\n' + LINE,
    "not-json": b"{not a cassette",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(VARIED))
def test_the_banner_counts_what_a_load_gives(tmp_path: Path, name: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(VARIED[name])
    assert interactions_in(path) == _loaded(path)


def test_a_missing_cassette_counts_none(tmp_path: Path) -> None:
    assert interactions_in(tmp_path / "absent.json") == 0


def _image_line(prompt: str) -> bytes:
    """An interaction line whose request holds an image as 5 million numbers (18 MB)."""
    image = b"[" + b",".join(str(i % 256).encode() for i in range(5_000_000)) + b"]"
    return interaction_line(_interaction(prompt, image=True)).replace(b'"image":[0]', b'"image":' + image, 1)


@pytest.fixture(scope="module")
def two_images() -> bytes:
    """A version-2 cassette of two image recordings (~36 MB)."""
    return _lines(0) + _image_line("first") + _image_line("second")


def test_a_large_cassette_is_counted_without_parsing_its_lines(tmp_path: Path, two_images: bytes,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(two_images + _image_line("torn")[:1_000_000])  # and a torn long tail
    assert _loaded(path) == 2
    parsed: list[int] = []

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(orjson, name)

        @staticmethod
        def loads(data: Any) -> Any:
            parsed.append(len(data))
            return orjson.loads(data)

    validate = Interaction.model_validate_json

    def validating(data: Any, **kwargs: Any) -> Interaction:
        parsed.append(len(data))
        return validate(data, **kwargs)

    monkeypatch.setattr(cassette_format, "orjson", Spy())
    monkeypatch.setattr(Interaction, "model_validate_json", validating)
    assert interactions_in(path) == 2
    assert parsed and max(parsed) < 4096  # the header line only


def test_serve_summarises_a_large_cassette_it_did_not_add_to(tmp_path: Path, two_images: bytes) -> None:
    """Over a real `serve`: the count printed when the server stops."""
    cassette = tmp_path / "cassettes" / "big.json"
    cassette.parent.mkdir()
    cassette.write_bytes(two_images)
    args = ("--mode", "replay-or-record", "--cassette", "big", "--cassette-dir", str(cassette.parent))
    with serve(*args, data_dir=tmp_path) as (_base, proc):
        pass
    out = proc.stdout.read() if proc.stdout else ""
    assert f"recorded 0 new interaction(s) into {cassette} (2 in the cassette)" in out
