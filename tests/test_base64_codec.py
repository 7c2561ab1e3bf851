"""The piecewise base64 of large cassette bodies (`cassettes/base64_codec.py`) gives what the one-call
codec gives: the same text and bytes, and an error for the same texts. The piece sizes are shrunk so
that generated values of a few dozen bytes are cut into many pieces."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.cassettes import base64_codec
from emulator.cassettes.format import Body
from tests.examples import property_examples

SETTINGS = settings(max_examples=property_examples(150), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(base64_codec, "DECODE_PIECE_CHARS", 8)
    monkeypatch.setattr(base64_codec, "ENCODE_PIECE_BYTES", 6)
    yield


def _one_call(text: str) -> bytes | type[Exception]:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:  # binascii.Error, or a text that is not ASCII
        return type(exc) if type(exc) is not UnicodeEncodeError else ValueError


def _pieces(text: str) -> bytes | type[Exception]:
    try:
        return base64_codec.decode(text)
    except ValueError as exc:
        return type(exc) if type(exc) is not UnicodeEncodeError else ValueError


@SETTINGS
@given(data=st.binary(max_size=80))
def test_encoding_in_pieces_writes_what_one_call_writes(small_pieces: None, data: bytes) -> None:
    text = base64_codec.encode(data)
    assert text == base64.b64encode(data).decode("ascii")
    assert base64_codec.decode(text) == data


# Valid base64 with damage: characters outside the alphabet, padding in the middle or missing,
# a stray character, whitespace, non-ASCII.
DAMAGE = st.sampled_from(["", "=", "==", "===", "A", "AB", "ABC", "-", "_", " ", "\n", "é", "QQ==", "*"])


@SETTINGS
@given(data=st.binary(max_size=60), cut=st.integers(0, 100), damage=DAMAGE, tail=DAMAGE)
def test_decoding_in_pieces_reads_and_refuses_what_one_call_does(small_pieces: None, data: bytes, cut: int,
                                                                 damage: str, tail: str) -> None:
    valid = base64.b64encode(data).decode("ascii")
    cut = min(cut, len(valid))
    for text in (valid, valid[:cut] + damage + valid[cut:] + tail, valid + tail, damage + valid):
        assert _pieces(text) == _one_call(text), text


@SETTINGS
@given(text=st.text(alphabet="ABCDabcd0189+/=-_ \n", max_size=40))
def test_decoding_in_pieces_agrees_on_any_text_of_base64_characters(small_pieces: None, text: str) -> None:
    assert _pieces(text) == _one_call(text)


def test_a_base64_body_is_stored_and_read_back_through_the_pieces(small_pieces: None) -> None:
    data = bytes(range(256)) * 3
    body = Body.from_bytes(data, "image/png")
    assert body.encoding == "base64" and body.base64 == base64.b64encode(data).decode("ascii")
    assert Body.model_validate_json(body.model_dump_json(by_alias=True)).to_bytes() == data
    with pytest.raises(ValueError, match="invalid base64 body"):
        Body.model_validate({"encoding": "base64", "base64": body.base64[:-8] + "=" + body.base64[-7:]})



@SETTINGS
@given(request_data=st.binary(max_size=40), answer_data=st.binary(max_size=40))
def test_a_line_with_large_base64_bodies_is_the_line_one_call_writes(small_pieces: None, request_data: bytes,
                                                                     answer_data: bytes) -> None:
    """The cassette line of an interaction holding base64 bodies past `splice.LONG_STRING_CHARS`
    (shrunk) is spliced together, a few characters at a time (`splice.spliced`): byte for byte
    what orjson writes in one call."""
    import orjson

    from emulator.cassettes import Interaction, RecordedRequest, RecordedResponse, splice
    from emulator.cassettes.format import interaction_line

    interaction = Interaction(
        request=RecordedRequest.build("POST", "/client/v4/accounts/a/ai/run/@cf/openai/whisper", {},
                                      {"content-type": "audio/wav"}, b"\xff" + request_data),
        response=RecordedResponse.build(200, {"content-type": "image/png"}, b"\x89PNG" + answer_data),
        neurons=1.5,
    )
    whole = orjson.dumps(interaction.model_dump(mode="json", exclude_none=True, by_alias=True)) + b"\n"
    with mock.patch.object(splice, "LONG_STRING_CHARS", 8), mock.patch.object(splice, "SLICE_CHARS", 4):
        assert interaction_line(interaction) == whole
