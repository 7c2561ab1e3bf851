"""Seeded readable prose, its length rule (answers end under the caller's cap) and stream chunking."""

from __future__ import annotations

import re
from functools import cache

from faker import Faker
from faker.config import AVAILABLE_LOCALES

CHARS_PER_TOKEN = 4
MIN_NATURAL_TOKENS = 20
MAX_NATURAL_TOKENS = 120
# Caps of at least SHORT_CAP tokens leave room for a whole answer, which then aims at CAP_SHARE_PERCENT of it.
SHORT_CAP = 24
CAP_SHARE_PERCENT = 75

# A word of up to 6 letters stays whole; longer words are cut in 4-letter pieces; punctuation and
# '_' are their own chunks; leading whitespace sticks to the chunk after it, trailing whitespace
# stands alone. Every character matches some branch, so findall never skips text.
_TOKEN_RE = re.compile(r"\s*(?:[^\W_]{1,6}(?![^\W_])|[^\W_]{1,4}|[^\w\s]|_)|\s+")


def count_tokens(text: str) -> int:
    """The length rule fake text is drawn and cut by: ceil(len/4), so any non-empty text is at least 1.
    Usage figures of the text tasks come from fakes/tokens.py (each family's tokenizer and template)."""
    return -(-len(text) // CHARS_PER_TOKEN)


@cache
def faker_for(locale: str) -> Faker:
    """One Faker per locale for the whole process: building one costs ~20 ms, seeding one ~5 µs."""
    return Faker(locale if locale in AVAILABLE_LOCALES else "en_US")


@cache
def _sentence_joiner(locale: str) -> str:
    # Scripts written without spaces (zh, ja, th) must not get one between sentences either.
    for provider in faker_for(locale).providers:
        if ".lorem." in type(provider).__module__:
            return " " if getattr(provider, "word_connector", " ") == " " else ""
    return " "


def natural_tokens(drawn: int, max_tokens: int) -> int:
    """How long an answer sets out to be: the seed's natural length, kept under a cap the caller set.

    A real model mostly finishes its thought well inside `max_tokens`, so under a cap of at least
    SHORT_CAP the answer aims for at most CAP_SHARE of it and ends with `stop`; only a really short cap
    cuts the answer (`length`).
    """
    if max_tokens >= SHORT_CAP:
        return max(1, min(drawn, max_tokens * CAP_SHARE_PERCENT // 100))
    return drawn


def prose(seed: int, max_tokens: int, *, locale: str = "en_US") -> tuple[str, bool]:
    """Seeded whole sentences up to a seed-drawn length (natural_tokens), cut only where they overrun
    `max_tokens`; returns (text, truncated). A smaller cap gives a prefix of the larger cap's answer."""
    if max_tokens <= 0:
        return "", True
    fake = faker_for(locale)
    fake.seed_instance(seed)
    target_chars = natural_tokens(fake.random_int(MIN_NATURAL_TOKENS, MAX_NATURAL_TOKENS), max_tokens) * (
        CHARS_PER_TOKEN)
    limit_chars = max_tokens * CHARS_PER_TOKEN
    joiner = _sentence_joiner(locale)
    text = fake.sentence()  # at least one sentence, even when it overruns the cap
    while True:
        longer = text + joiner + fake.sentence()
        if len(longer) > target_chars:
            break
        text = longer
    if len(text) > limit_chars:
        return text[:limit_chars], True
    return text, False


def split_tokens(text: str) -> list[str]:
    """Stream chunks of roughly one token each; their concatenation is exactly `text`."""
    return _TOKEN_RE.findall(text)
