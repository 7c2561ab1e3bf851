"""Seeded readable prose, the documented token-count rule and stream chunking for text fakes."""

from __future__ import annotations

import re
from functools import cache

from faker import Faker
from faker.config import AVAILABLE_LOCALES

CHARS_PER_TOKEN = 4
MIN_NATURAL_TOKENS = 20
MAX_NATURAL_TOKENS = 120

# A word of up to 6 letters stays whole; longer words are cut in 4-letter pieces; punctuation and
# '_' are their own chunks; leading whitespace sticks to the chunk after it, trailing whitespace
# stands alone. Every character matches some branch, so findall never skips text.
_TOKEN_RE = re.compile(r"\s*(?:[^\W_]{1,6}(?![^\W_])|[^\W_]{1,4}|[^\w\s]|_)|\s+")


def count_tokens(text: str) -> int:
    """Tokens by the emulator's documented rule: ceil(len/4), so any non-empty text is at least 1."""
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


def prose(seed: int, max_tokens: int, *, locale: str = "en_US") -> tuple[str, bool]:
    """Seeded sentences of a seed-chosen natural length, cut to `max_tokens`; returns (text, truncated)."""
    if max_tokens <= 0:
        return "", True
    fake = faker_for(locale)
    fake.seed_instance(seed)
    target = fake.random_int(MIN_NATURAL_TOKENS, MAX_NATURAL_TOKENS)
    # Stop generating once past the cut: the result is then a prefix of the untruncated text,
    # so a larger max_tokens only ever extends the answer.
    limit_chars = max_tokens * CHARS_PER_TOKEN
    target_chars = target * CHARS_PER_TOKEN
    joiner = _sentence_joiner(locale)
    parts: list[str] = []
    length = -len(joiner)
    while length < target_chars and length <= limit_chars:
        sentence = fake.sentence()
        parts.append(sentence)
        length += len(sentence) + len(joiner)
    text = joiner.join(parts)
    if len(text) > limit_chars:
        return text[:limit_chars], True
    return text, False


def split_tokens(text: str) -> list[str]:
    """Stream chunks of roughly one token each; their concatenation is exactly `text`."""
    return _TOKEN_RE.findall(text)
