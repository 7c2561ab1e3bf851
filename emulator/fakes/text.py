"""Seeded readable prose from precomputed sentence tables, its length rule (answers end under the
caller's cap) and stream chunking.

An answer is drawn, not written: each locale has a table of sentences built once from its Faker lorem
vocabulary, and a call picks sentences from it with one numpy PCG64 generator set to the request's seed
(`seed.reseeded`).
Every sentence's length is in the table, and so is its token count in each tokenizer family
(`family_tokens`, worked out once per locale and family with fakes/tokens.py), so both counts of an
answer come out of the draw (`Prose.tokens`, `Prose.tokens_in`) without reading the text again: the
count of sentences joined is the sum of their counts, since each ends in punctuation and the next starts
with a word, and the tokenizer's pieces never span that boundary.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import orjson

from emulator.fakes.seed import derive_seed, reseeded, rng
from emulator.fakes.tokens import Family, text_tokens

CHARS_PER_TOKEN = 4
MIN_NATURAL_TOKENS = 20
MAX_NATURAL_TOKENS = 120
DEFAULT_LOCALE = "en_US"
# Caps of at least SHORT_CAP tokens leave room for a whole answer, which then aims at CAP_SHARE_PERCENT
# of it.
SHORT_CAP = 24
CAP_SHARE_PERCENT = 75

# Sentences per locale table: a power of two, so a draw is a mask of a 64-bit number. 4096 sentences
# of ~6 words make repeats rare within one answer and cost ~10 ms to build, once per locale.
TABLE_SIZE = 4096
# Faker's own sentences are 4-8 words: a first sentence (always kept) then fits a 24-token cap's share.
MIN_WORDS, MAX_WORDS = 4, 8
COMMA_RATE = 0.12  # after a word inside a sentence (spaced scripts only)
QUESTION_RATE, EXCLAMATION_RATE = 0.06, 0.03  # sentence endings other than the locale's full stop
# Draws taken from the generator at once: enough for a natural answer (at most ~15 sentences).
DRAW_BATCH = 24

# A word of up to 6 letters stays whole; longer words are cut in 4-letter pieces; punctuation and
# '_' are their own chunks; leading whitespace sticks to the chunk after it, trailing whitespace
# stands alone. Every character matches some branch, so findall never skips text.
_TOKEN_RE = re.compile(r"\s*(?:[^\W_]{1,6}(?![^\W_])|[^\W_]{1,4}|[^\w\s]|_)|\s+")


def tokens_for_length(chars: int) -> int:
    """Tokens of a text of `chars` characters by the emulator's documented rule: ceil(len/4)."""
    return -(-chars // CHARS_PER_TOKEN)


def count_tokens(text: str) -> int:
    """The length rule fake text is drawn and cut by: ceil(len/4), so any non-empty text is at least 1.
    Usage figures of the text tasks come from fakes/tokens.py (each family's tokenizer and template)."""
    return tokens_for_length(len(text))


@dataclass(frozen=True, slots=True)
class SentenceTable:
    """One locale's sentences, with their lengths, and the text put between two sentences."""

    sentences: tuple[str, ...]
    lengths: tuple[int, ...]
    joiner: str


@cache
def _lorem_locale(locale: str) -> str:
    """The locale whose Faker lorem words `locale` uses: its own, else its language's, else en_US."""
    if locale == DEFAULT_LOCALE:
        return locale  # its table ships with the package: no need to import Faker to know it exists
    language = locale.split("_")[0]
    for name in (locale, *(f"{language}_{region}" for region in ("US", "CN", "JP", language.upper()))):
        try:
            importlib.import_module(f"faker.providers.lorem.{name}")
        except (ModuleNotFoundError, ValueError):
            continue
        return name
    return DEFAULT_LOCALE


def sentence_table(locale: str = DEFAULT_LOCALE) -> SentenceTable:
    return _build_table(_lorem_locale(locale))


@cache
def family_tokens(locale: str, family: Family) -> tuple[int, ...]:
    """Each sentence of the locale's table counted by the family's tokenizer (fakes/tokens.py): shipped
    for the default locale (counting 4,096 sentences takes ~30 ms, the first call of each family)."""
    shipped = _shipped_counts().get(family.value) if locale == DEFAULT_LOCALE else None
    return tuple(shipped) if shipped is not None else count_family_tokens(locale, family)


def count_family_tokens(locale: str, family: Family) -> tuple[int, ...]:
    return tuple(text_tokens(sentence, family) for sentence in sentence_table(locale).sentences)


# The default locale's table, as `build_table` makes it, ships with the package: the first answer of a
# fresh server then neither imports Faker (~0.1 s) nor builds the table (~0.07 s).
SHIPPED_TABLES = Path(__file__).with_name("data")


def shipped_table_path(locale: str) -> Path:
    return SHIPPED_TABLES / f"sentences-{locale}.json"


def shipped_counts_path(locale: str) -> Path:
    return SHIPPED_TABLES / f"sentence-tokens-{locale}.json"


@cache
def _shipped_counts() -> dict[str, list[int]]:
    """The default table's token counts by family name, as `count_family_tokens` makes them."""
    path = shipped_counts_path(DEFAULT_LOCALE)
    counts: dict[str, list[int]] = orjson.loads(path.read_bytes()) if path.is_file() else {}
    return counts


@cache
def _build_table(locale: str) -> SentenceTable:
    """The locale's sentence table: shipped (tests/test_sentence_tables.py keeps it equal to what
    `build_table` makes from the installed Faker), else built."""
    shipped = shipped_table_path(locale)
    if locale == DEFAULT_LOCALE and shipped.is_file():
        data = orjson.loads(shipped.read_bytes())
        sentences = tuple(data["sentences"])
        return SentenceTable(sentences, tuple(len(s) for s in sentences), data["joiner"])
    return build_table(locale)


def write_shipped_table(locale: str = DEFAULT_LOCALE) -> Path:
    """Write the locale's table where `_build_table` reads it (after a Faker or table-rule change)."""
    table = build_table(locale)
    path = shipped_table_path(locale)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(orjson.dumps({"locale": locale, "joiner": table.joiner, "sentences": table.sentences},
                                  option=orjson.OPT_INDENT_2) + b"\n")
    _build_table.cache_clear()
    lines = [orjson.dumps(family.value) + b": " + orjson.dumps(count_family_tokens(locale, family))
             for family in Family]
    shipped_counts_path(locale).write_bytes(b"{\n" + b",\n".join(lines) + b"\n}\n")  # a family a line
    return path


def build_table(locale: str) -> SentenceTable:
    """TABLE_SIZE sentences of the locale's lorem words, the same in every process (fixed seed)."""
    provider = importlib.import_module(f"faker.providers.lorem.{locale}").Provider
    words = tuple(provider.word_list)
    connector = getattr(provider, "word_connector", " ")
    stop = getattr(provider, "sentence_punctuation", ".")
    spaced = connector == " "
    gen = rng(derive_seed("sentence-table", locale))
    counts = gen.integers(MIN_WORDS, MAX_WORDS + 1, size=TABLE_SIZE)
    endings = gen.random(TABLE_SIZE)
    sentences = []
    for count, ending in zip(counts.tolist(), endings.tolist(), strict=True):
        picks = gen.integers(len(words), size=count).tolist()
        chosen = [words[i] for i in picks]
        if spaced:
            commas = gen.random(count).tolist()
            chosen = [w + "," if 1 <= k < count - 2 and commas[k] < COMMA_RATE else w
                      for k, w in enumerate(chosen)]
        sentence = connector.join(chosen)
        sentence = sentence[:1].upper() + sentence[1:]
        if stop == "." and ending < QUESTION_RATE:
            sentence += "?"
        elif stop == "." and ending < QUESTION_RATE + EXCLAMATION_RATE:
            sentence += "!"
        elif not stop.isspace():
            sentence += stop
        sentences.append(sentence)
    # Thai ends a sentence with a space: it goes between sentences, so no answer ends in whitespace.
    joiner = " " if spaced else stop if stop.isspace() else ""
    return SentenceTable(tuple(sentences), tuple(len(s) for s in sentences), joiner)


@dataclass(frozen=True, slots=True)
class Prose:
    """A drawn answer: its text, its tokens by the count rule (from the table's lengths), whether it
    was cut at the token limit, and which of the locale's table sentences it joins."""

    text: str
    tokens: int
    truncated: bool
    locale: str = DEFAULT_LOCALE
    picks: tuple[int, ...] = ()

    def tokens_in(self, family: Family) -> int:
        """Tokens of the text in the family's tokenizer (fakes/tokens.py `text_tokens`), summed from
        the table; a text cut mid-sentence is counted as it stands."""
        if self.truncated:
            return text_tokens(self.text, family)
        counts = family_tokens(self.locale, family)
        return sum([counts[i] for i in self.picks])


def natural_tokens(drawn: int, max_tokens: int) -> int:
    """How long an answer sets out to be: the seed's natural length, kept under a cap the caller set.

    A real model mostly finishes its thought well inside `max_tokens`, so under a cap of at least
    SHORT_CAP the answer aims for at most CAP_SHARE of it and ends with `stop`; only a really short cap
    cuts the answer (`length`).
    """
    if max_tokens >= SHORT_CAP:
        return max(1, min(drawn, max_tokens * CAP_SHARE_PERCENT // 100))
    return drawn


def compose(seed: int, max_tokens: int, *, target_tokens: int | None = None,
            locale: str = DEFAULT_LOCALE) -> Prose:
    """Seeded whole sentences up to `target_tokens` (by default the seed's natural length under the cap,
    `natural_tokens`): the first sentence always, then each next one that still fits the target; cut
    only where they overrun `max_tokens`. A smaller cap gives a prefix of the larger cap's answer."""
    if max_tokens <= 0:
        return Prose("", 0, True)
    locale = _lorem_locale(locale)
    table = sentence_table(locale)
    sentences, lengths, joiner = table.sentences, table.lengths, table.joiner
    bits = reseeded(seed).bit_generator
    draws = bits.random_raw(DRAW_BATCH).tolist()
    if target_tokens is None:
        drawn = MIN_NATURAL_TOKENS + draws[0] % (MAX_NATURAL_TOKENS - MIN_NATURAL_TOKENS + 1)
        target_tokens = natural_tokens(drawn, max_tokens)
    target_chars = target_tokens * CHARS_PER_TOKEN
    limit_chars = max_tokens * CHARS_PER_TOKEN
    step = len(joiner)
    index = draws[1] & (TABLE_SIZE - 1)
    picks = [index]
    length = lengths[index]
    n = 2
    while True:
        if n == len(draws):
            draws += bits.random_raw(DRAW_BATCH).tolist()
        index = draws[n] & (TABLE_SIZE - 1)
        if length + step + lengths[index] > target_chars:
            break
        picks.append(index)
        length += step + lengths[index]
        n += 1
    text = joiner.join([sentences[i] for i in picks])
    if length > limit_chars:
        return Prose(text[:limit_chars], max_tokens, True, locale, tuple(picks))
    return Prose(text, tokens_for_length(length), False, locale, tuple(picks))


def prose(seed: int, max_tokens: int, *, locale: str = DEFAULT_LOCALE) -> tuple[str, bool]:
    """Seeded whole sentences up to a seed-drawn length (natural_tokens), cut only where they overrun
    `max_tokens`; returns (text, truncated)."""
    answer = compose(seed, max_tokens, locale=locale)
    return answer.text, answer.truncated


def split_tokens(text: str) -> list[str]:
    """Stream chunks of roughly one token each; their concatenation is exactly `text`."""
    return _TOKEN_RE.findall(text)
