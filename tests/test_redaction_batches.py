"""A long list is redacted a batch of strings at a time (`Redactor._redact_long_list`), and a long text
is tested for credential marks by byte passes (`shapes.may_hold_credential`): property tests hold
both to the string-by-string result, on text built to hit every mark, secret and account id."""

from __future__ import annotations

import string
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.cassettes import Redactor, redact, shapes

ACCOUNT = "0123456789abcdef0123456789abcdef"
SECRET = "cfut_secret_token_value"
# Pieces that make a credential mark, a secret or an account id likely, or nearly: '@' ':' '=' '/',
# "bearer" in any case, hex runs either side of 37 characters, non-ASCII letters and lone surrogates
# (which redaction must take as they come), the batch separator itself.
PIECES = st.sampled_from([
    "@", ":", "=", "/", "bearer", "BeArEr", "beare", "Bearer abcdefgh1234", "a@b.io", "key=value123",
    "0" * 36, "f" * 37, "0123456789abcdef" * 3, "g" * 37, "é", "😀", "\ud800", "\x00", " ", "words ",
    SECRET, SECRET[:-1], ACCOUNT, f"accounts/{ACCOUNT}", "t",
])
TEXT = st.lists(PIECES | st.text(alphabet=string.ascii_letters + string.digits + " ,.é", max_size=12),
                max_size=12).map("".join)
ITEMS = st.lists(TEXT | st.integers(-5, 5) | st.none() | st.booleans()
                 | st.dictionaries(st.sampled_from(["a", "token", "prompt"]), TEXT, max_size=2)
                 | st.lists(TEXT, max_size=3), max_size=40)
REDACTORS = st.sampled_from([
    Redactor(),
    Redactor(secrets=[SECRET], account_ids=[ACCOUNT]),
    Redactor(secrets=[SECRET, "t"], account_ids=[ACCOUNT]),  # a short secret: whole values only
])


def _one_by_one(redactor: Redactor, items: list[Any]) -> list[Any]:
    """What redacting each item alone gives (the list path for short lists)."""
    return [item if type(item) in (int, float, bool, type(None)) else redactor.redact_json(item)
            for item in items]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(text=TEXT)
def test_the_byte_passes_find_what_the_pattern_finds(text: str) -> None:
    for padding in ("", " " * 40):  # below and above the length the byte passes start at
        padded = padding + text + padding
        assert shapes.may_hold_credential(padded) == (shapes._MAYBE_CREDENTIAL.search(padded) is not None)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(items=ITEMS, redactor=REDACTORS, batch=st.integers(1, 6), chars=st.sampled_from([1 << 20, 8]))
def test_a_list_redacted_in_batches_equals_one_item_at_a_time(
    items: list[Any], redactor: Redactor, batch: int, chars: int
) -> None:
    """Batches of a few items (and, with `chars` 8, batches whose strings are looked at one by one),
    so that generated lists cross many batch boundaries."""
    expected = _one_by_one(redactor, items)
    with mock.patch.object(redact, "REDACT_BATCH_ITEMS", batch), \
            mock.patch.object(redact, "_BATCH_CHARS", chars):
        got = redactor.redact_json({"list": items})["list"]
    assert repr(got) == repr(expected)  # types too: True is not 1


def test_a_long_list_at_the_real_batch_size_equals_one_item_at_a_time() -> None:
    """3,000 strings, one in every 700 holding a secret, an account id, an email or a bearer token:
    the batches holding one are redacted string by string, the others kept whole."""
    redactor = Redactor(secrets=[SECRET], account_ids=[ACCOUNT])
    marked = [f"x {SECRET} y", f"/accounts/{ACCOUNT}/ai", "mail me: a@b.io", "Bearer abcdefgh12345678"]
    items: list[Any] = [f"some words here {i}" for i in range(3000)]
    for n, text in enumerate(marked):
        items[700 * (n + 1)] = text
    items[1500] = {"token": "hunter22", "n": [1, 2]}
    assert len(items) > redact.REDACT_BATCH_ITEMS
    got = redactor.redact_json(items)
    assert got == _one_by_one(redactor, items)
    assert got[700] == "x REDACTED y" and got[1500] == {"token": "REDACTED", "n": [1, 2]}
    assert got[:699] == items[:699]
