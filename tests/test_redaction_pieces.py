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

from emulator.cassettes import Redactor, redact, shapes, utf8
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
    SECRET, "words ", "x", "\u017fecret: abcdefgh12", "to\u212aen=abcdefgh12", "api_\u212aey", "sec", "beare",
    "REDACTED",
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


@PIECES
@given(text=TEXT, redactor=REDACTORS, piece=st.integers(1, 16), long_piece=st.integers(1, 24))
def test_pieces_past_long_piece_are_redacted_in_the_helper_process(text: str, redactor: Redactor, piece: int,
                                                                   long_piece: int) -> None:
    """A piece longer than LONG_PIECE (shrunk here) is worked out by the helper process
    (`cassettes/shapes_process.py`), which gives back what the five substitutions give here."""
    with mock.patch.object(redact, "LONG_PIECE", long_piece):
        assert redactor._redact_pieces(text, piece) == _whole(redactor, text)


def _every_substitution(text: str, placeholder: str) -> str:
    """The five substitutions, each run whatever the text holds."""
    text = shapes._BEARER.sub(lambda m: m.group(1) + shapes.REDACTED, text)
    text = shapes._NAMED_VALUE.sub(lambda m: m.group("name") + m.group("sep") + shapes.REDACTED, text)
    text = shapes._GLOBAL_KEY.sub(shapes.REDACTED, text)
    text = shapes._ACCOUNT_AFTER_ACCOUNTS.sub(lambda m: m.group(1) + placeholder, text)
    return shapes._EMAIL.sub(shapes.REDACTED_EMAIL, text)


PLACEHOLDERS = st.sampled_from(["{account_id}", "x@y.io", "api_key="])


@PIECES
@given(text=TEXT, placeholder=PLACEHOLDERS)
def test_the_word_checks_skip_only_substitutions_that_change_nothing(text: str, placeholder: str) -> None:
    """`shapes.redact_shapes` runs a substitution on a long ASCII text only when the text holds its
    words (`_wanted`, made to look at every text here): the same text as all five run."""
    with mock.patch.object(shapes, "LITERAL_CHECK_CHARS", 0):
        assert shapes.redact_shapes(text, placeholder) == _every_substitution(text, placeholder)


@pytest.mark.parametrize("change", ["a name word left out", "non-ASCII text checked"])
def test_the_texts_catch_a_word_check_that_skips_too_much(change: str) -> None:
    """A word list short of one word, or the check made on text where `re` folds other letters to
    ASCII ones (``ſ``, the Kelvin sign), is caught by the generated texts."""
    words = tuple(w for w in shapes._NAME_WORDS if w != b"passw") if change == "a name word left out" \
        else shapes._NAME_WORDS
    ascii_guard = change != "non-ASCII text checked"

    def wanted(s: str) -> shapes._Wanted | None:
        if not shapes.may_hold_credential(s):
            return None
        if ascii_guard and not s.isascii():
            return shapes._EVERY_SHAPE
        lowered = s.lower()
        named = any(w.decode() in lowered for w in words)
        return shapes._Wanted(bearer="bearer" in lowered, named_value=(":" in s or "=" in s) and named,
                              global_key=True, account="accounts/" in lowered)

    with mock.patch.object(shapes, "LITERAL_CHECK_CHARS", 0), mock.patch.object(shapes, "_wanted", wanted):
        try:
            found = find(st.tuples(TEXT, PLACEHOLDERS),
                         lambda case: shapes.redact_shapes(*case) != _every_substitution(*case),
                         settings=settings(max_examples=3000, database=None, derandomize=True))
        except NoSuchExample:
            pytest.fail(f"no text caught {change}")
    assert found


@PIECES
@given(text=TEXT, redactor=REDACTORS, piece=st.integers(1, 16), long_piece=st.integers(1, 24),
       scan=st.integers(1, 9))
def test_utf8_text_redacted_as_its_bytes_equals_the_text_redacted(text: str, redactor: Redactor, piece: int,
                                                                  long_piece: int, scan: int) -> None:
    """`redact_utf8` (a long text answer, never decoded whole) replaces secrets and account ids in the
    bytes a slice at a time, and looks for the shapes in pieces cut just after a `_CUT` byte, each
    decoded by itself, or sent as bytes to the helper process when long: what `redact_text` gives,
    encoded. Thresholds shrunk, so that the bytes' way is taken past a few bytes."""
    data = text.encode()
    with mock.patch.object(redact, "LONG_TEXT", 4), mock.patch.object(redact, "TEXT_PIECE", piece), \
            mock.patch.object(redact, "SCAN_CHARS", scan), \
            mock.patch.object(redact, "LONG_PIECE", long_piece):
        got = redactor.redact_utf8(data)
    assert got == redactor.redact_text(text).encode()


@PIECES
@given(text=st.text(alphabet="abé😀", max_size=40), old=st.text(alphabet="abé😀", min_size=1, max_size=4),
       scan=st.integers(1, 9))
def test_a_secret_replaced_in_utf8_bytes_is_replaced_where_the_text_has_it(text: str, old: str,
                                                                             scan: int) -> None:
    """A character's UTF-8 encoding is found in UTF-8 text only where that character starts, so
    replacing a secret's bytes replaces the text's occurrences of it, overlapping and astride a
    slice's end included."""
    with mock.patch.object(redact, "SCAN_CHARS", scan):
        got = redact._replace_in_slices(text.encode(), old.encode(), b"<R>")
    assert got == text.replace(old, "<R>").encode()


@PIECES
@given(data=st.binary(max_size=40) | st.text(max_size=20).map(str.encode), size=st.integers(1, 7))
def test_utf8_is_checked_a_chunk_at_a_time_as_one_decode_checks_it(data: bytes, size: int) -> None:
    """`is_utf8` decodes a chunk at a time (`utf8.CHUNK_BYTES`, shrunk), a character cut by a chunk's
    end kept for the next: the verdict of one `decode`."""
    try:
        data.decode("utf-8")
        whole = True
    except UnicodeDecodeError:
        whole = False
    with mock.patch.object(utf8, "CHUNK_BYTES", size):
        assert redact.is_utf8(data) is whole


@PIECES
@given(text=st.lists(st.sampled_from([" ", "\n", "\u3000", "\xa0", "\u2028", "\u200b", "{", "[", '"', "x",
                                      "é", "😀"]), max_size=12).map("".join))
def test_a_utf8_text_opens_json_as_its_decoded_text_does(text: str) -> None:
    """White space is Unicode's (`str.lstrip`), found past the first chunk decoded."""
    assert redact.opens_json_utf8(text.encode()) is redact.opens_json_text(text)
    assert redact.opens_json_utf8(("\u3000" * 3000 + text).encode()) is redact.opens_json_text(text)
