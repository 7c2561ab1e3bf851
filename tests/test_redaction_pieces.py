"""A long text is searched for credential shapes a piece at a time (`Redactor._redact_pieces`, pieces
cut just after `,` `;` `&` `}` `]`): property tests hold the pieces to the five substitutions over
the whole text, on texts built to put every shape astride every cut, with pieces of 1-16 characters.
A cut set that a shape can cross (whitespace, `:`, `=`, `/`, `@`) is shown to break the property,
so the texts are shown to be able to catch a wrong cut."""

from __future__ import annotations

import re
import string
from unittest import mock

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from emulator.cassettes import Redactor, redact
from tests.examples import property_examples

ACCOUNT = "0123456789abcdef0123456789abcdef"
SECRET = "cfut_secret_token_value"
# Fragments of every shape the five patterns find, near misses of them, what surrounds them in
# JSON and query strings, the cut characters, whitespace (which `bearer\s+` and the named value's
# `\s*` span), non-ASCII text and the account placeholder's braces.
FRAGMENTS = st.sampled_from([
    "Bearer ", "bearer\n", "BEARER\t ", "abcdefgh1234", "tok.en~+/=-xyz", "Bearer abcdefgh12345678",
    "api_key", "x-api-key", "token", "Password", "client_secret", "=", ":", " : ", "'", '"',
    "api_key=abcdefgh12", '"token": "hunter2222"', "password: s3cr3tvalue", "x_auth_key='0123456789'",
    "0" * 36, "f" * 37, "0123456789abcdef" * 3, "accounts/", "ACCOUNTS/", f"accounts/{ACCOUNT}", ACCOUNT,
    "a@b.io", "first.last+tag@mail.example.com", "@", ".", "-", "_", "%",
    ",", ";", "&", "}", "]", "{", "[", "/", " ", "\n", "\t", "é", "😀", "\u2028", "{account_id}",
    SECRET, "words ", "x",
])
TEXT = st.lists(FRAGMENTS | st.text(alphabet=string.ascii_letters + string.digits + " ,;&}]:=/@._-é",
                                    max_size=6), max_size=24).map("".join)
REDACTORS = st.sampled_from([
    Redactor(),
    Redactor(secrets=[SECRET], account_ids=[ACCOUNT]),
])
PIECES = settings(max_examples=property_examples(150), deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])


def _whole(redactor: Redactor, text: str) -> str:
    """The five substitutions over the whole text (what a text up to LONG_TEXT gets)."""
    return redactor._redact_shapes(text)


@PIECES
@given(text=TEXT, redactor=REDACTORS, piece=st.integers(1, 16))
def test_a_text_redacted_in_pieces_equals_the_whole_text_redacted(text: str, redactor: Redactor,
                                                                  piece: int) -> None:
    assert redactor._redact_pieces(text, piece) == _whole(redactor, text)


@PIECES
@given(text=TEXT, redactor=REDACTORS)
def test_redact_text_of_a_long_text_equals_the_whole_text_redacted(text: str, redactor: Redactor) -> None:
    """`redact_text` takes the pieces' way past LONG_TEXT (shrunk here), secrets and account ids
    replaced first over the whole text."""
    with mock.patch.object(redact, "LONG_TEXT", 4), mock.patch.object(redact, "TEXT_PIECE", 5), \
            mock.patch.object(redact, "SCAN_CHARS", 3):
        pieces = redactor.redact_text(text)
    assert pieces == redactor.redact_text(text)


@PIECES
@given(text=st.text(alphabet="abé😀", max_size=40), old=st.text(alphabet="abé😀", min_size=1, max_size=4),
       scan=st.integers(1, 9))
def test_a_long_text_has_its_secrets_replaced_as_one_replace_does(text: str, old: str, scan: int) -> None:
    """`_replace_in_slices` (secrets and account ids in a long text, looked for a slice at a time)
    gives what `str.replace` gives: overlapping and repeated occurrences (`aa` in `aaa`), ones
    astride a slice's end; and the text itself when there is none."""
    with mock.patch.object(redact, "SCAN_CHARS", scan):
        got = redact._replace_in_slices(text, old, "<R>")
    assert got == text.replace(old, "<R>")
    if old not in text:
        assert got is text


@pytest.mark.parametrize("cut", [r"[,;&}\]\s]", r"[,;&}\]:]", r"[,;&}\]=]", r"[,;&}\]/]", r"[,;&}\]@]",
                                 r"[,;&}\]_]", r"[,;&}\].]"])
def test_the_texts_catch_a_cut_a_shape_can_cross(cut: str) -> None:
    """With a character some shape holds added to the cut set, the generated texts find a text the
    pieces redact otherwise than the whole (so the property above could fail)."""
    redactor = Redactor(secrets=[SECRET], account_ids=[ACCOUNT])
    with mock.patch.object(redact, "_CUT", re.compile(cut)):
        try:
            found = find(st.tuples(TEXT, st.integers(1, 16)),
                         lambda case: redactor._redact_pieces(case[0], case[1]) != _whole(redactor, case[0]),
                         settings=settings(max_examples=2000, database=None, derandomize=True))
        except NoSuchExample:
            pytest.fail(f"no text told the cut set {cut} from the right one")
    assert found


def test_a_long_text_without_cut_characters_is_one_piece() -> None:
    text = "Bearer abcdefgh12345678 " * 10
    redactor = Redactor()
    assert redactor._redact_pieces(text, 4) == _whole(redactor, text)
    assert "abcdefgh" not in redactor._redact_pieces(text, 4)


def test_an_unchanged_long_text_is_given_back_itself() -> None:
    text = "note 0000001 some words here, " * 5_000  # > LONG_TEXT, nothing to redact
    assert len(text) > redact.LONG_TEXT
    assert Redactor(secrets=[SECRET]).redact_text(text) is text


def test_a_long_pretty_answer_is_redacted_as_the_whole_text_is() -> None:
    """At the real LONG_TEXT and TEXT_PIECE: 3 MB of JSON indented as `json.dumps(indent=1)` writes
    it, with a bearer token, a named value, an email and an account id every 7,001 lines."""
    lines = [f' "note {i:07d} some words here some words here",' for i in range(60_000)]
    for n in range(0, 60_000, 7_001):
        lines[n] = f' "Bearer abcdefgh{n:08d} api_key: s3cr3tvalue{n} a{n}@b.io accounts/{ACCOUNT}",'
    text = "[\n" + "\n".join(lines) + '\n "end"\n]'
    redactor = Redactor()
    got = redactor.redact_text(text)
    assert len(text) > redact.LONG_TEXT * 16
    assert got == _whole(redactor, text)
    assert "abcdefgh" not in got and "s3cr3t" not in got and "@b.io" not in got
