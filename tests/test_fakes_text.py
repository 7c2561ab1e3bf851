"""Tests for the prose, token-count and stream-chunk fakes."""

from __future__ import annotations

import contextlib
import io
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.fakes.text import (
    CAP_SHARE_PERCENT,
    CHARS_PER_TOKEN,
    MAX_NATURAL_TOKENS,
    SHORT_CAP,
    compose,
    count_tokens,
    family_tokens,
    prose,
    sentence_table,
    split_tokens,
)
from emulator.fakes.tokens import Family, text_tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100), ("x" * 401, 101)],
)
def test_count_tokens_rule(text: str, tokens: int) -> None:
    assert CHARS_PER_TOKEN == 4
    assert count_tokens(text) == tokens


def test_prose_is_deterministic_and_seed_dependent() -> None:
    assert prose(42, 256) == prose(42, 256)
    assert prose(42, 256)[0] != prose(43, 256)[0]


_FINGERPRINT = """
import hashlib
from emulator.fakes import audio, images, text, translation, vectors
parts = [
    repr(text.prose(7, 256)).encode(),
    translation.translate("Where is the station?", "en", "ru", 3).encode(),
    translation.translate_indic("Where is the station?", "tam_Taml", 3).encode(),
    vectors.embed(["a cat", "the dog barks"], 384, salt=2).tobytes(),
    images.png(64, 48, 5),
    images.jpeg(64, 48, 5),
    audio.wav(0.2, 5),
    audio.mp3(0.3, 5),
]
print(hashlib.sha256(b"|".join(parts)).hexdigest())
"""


def test_fakes_are_stable_across_processes() -> None:
    # A child with a different hash seed must produce the very same bytes as this process.
    root = str(Path(__file__).parents[1])
    env = {"PYTHONHASHSEED": "12345", "PYTHONPATH": root}
    argv = [sys.executable, "-c", _FINGERPRINT]
    child = subprocess.run(argv, capture_output=True, text=True, check=True, env=env, cwd=root).stdout
    here = io.StringIO()
    with contextlib.redirect_stdout(here):
        exec(_FINGERPRINT, {})
    assert child == here.getvalue()


def test_prose_natural_length_is_within_bounds() -> None:
    for seed in range(50):
        text, truncated = prose(seed, 10_000)
        assert not truncated
        assert count_tokens(text) <= MAX_NATURAL_TOKENS
        assert text.endswith((".", "?", "!"))
        assert text[0].isupper()


@pytest.mark.parametrize("max_tokens", [SHORT_CAP, 40, 64, 256])
def test_prose_ends_whole_under_a_cap_that_leaves_room(max_tokens: int) -> None:
    # A real model mostly stops well inside max_tokens: under such a cap the answer is whole sentences
    # of at most CAP_SHARE_PERCENT of it, never cut (finish_reason "stop").
    for seed in range(200):
        text, truncated = prose(seed, max_tokens)
        assert not truncated, (seed, max_tokens)
        assert text.endswith((".", "?", "!"))
        assert count_tokens(text) <= max_tokens * CAP_SHARE_PERCENT // 100


@pytest.mark.parametrize("max_tokens", [1, 5, 12, SHORT_CAP - 1])
def test_prose_is_cut_only_by_a_really_short_cap(max_tokens: int) -> None:
    cut = sum(prose(seed, max_tokens)[1] for seed in range(100))
    assert cut >= 50  # mostly `length`: not even one sentence fits


def test_prose_under_a_smaller_cap_is_a_prefix() -> None:
    for seed in range(30):
        natural, _ = prose(seed, 10_000)
        for max_tokens in (1, 5, 19, 40, 64):
            text, truncated = prose(seed, max_tokens)
            assert natural.startswith(text)
            if truncated:
                assert count_tokens(text) == max_tokens


def test_prose_non_positive_max_tokens() -> None:
    assert prose(1, 0) == ("", True)
    assert prose(1, -5) == ("", True)


def test_prose_locales() -> None:
    zh, _ = prose(3, 500, locale="zh_CN")
    assert " " not in zh
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh)
    fr, _ = prose(3, 500, locale="fr_FR")
    assert fr != prose(3, 500)[0]
    assert prose(3, 500, locale="xx_YY") == prose(3, 500)


def test_split_tokens_concatenates_back() -> None:
    gen = random.Random(5)
    alphabet = "ab cdefghij\n\t.,!?_-123 标准能够 ünïcødé  "
    samples = ["", " ", "Hello, world!", "internationalization", *(prose(s, 300)[0] for s in range(5))]
    samples += ["".join(gen.choice(alphabet) for _ in range(gen.randrange(60))) for _ in range(200)]
    for text in samples:
        chunks = split_tokens(text)
        assert "".join(chunks) == text
        assert all(chunks)


def test_split_tokens_is_roughly_one_token_each() -> None:
    assert split_tokens("Hello, big world!") == ["Hello", ",", " big", " world", "!"]
    chunks = split_tokens("internationalization")
    assert len(chunks) == 5
    assert all(len(chunk) <= 4 for chunk in chunks)
    text, _ = prose(11, 200)
    assert 0.5 * count_tokens(text) <= len(split_tokens(text)) <= 2 * count_tokens(text)


def test_compose_counts_tokens_from_the_table_as_the_count_rule_does() -> None:
    for seed in range(200):
        for max_tokens in (3, 40, 256):
            answer = compose(seed, max_tokens)
            assert answer.tokens == count_tokens(answer.text)
            natural = compose(seed, 10_000).tokens
            assert answer.truncated == (answer.tokens == max_tokens < natural)


LOREM_LOCALES = ("en_US", "fr_FR", "ru_RU", "ja_JP", "zh_CN", "ar_AA", "th_TH", "bn_BD")


@pytest.mark.parametrize("family", list(Family))
def test_table_token_counts_equal_the_tokenizer_on_the_joined_answer(family: Family) -> None:
    """An answer's count summed from the sentence table is what fakes/tokens.py gives for its text,
    in every family and in locales of every script the tables are built from."""
    for locale in LOREM_LOCALES:
        for seed in range(100 if locale == "en_US" else 10):
            for max_tokens in (2, 40, 256, 4000):
                answer = compose(seed * 7919 + 1, max_tokens, locale=locale)
                counted = text_tokens(answer.text, family)
                assert answer.tokens_in(family) == counted, (locale, seed, max_tokens)
    counts = family_tokens("en_US", family)
    assert counts == tuple(text_tokens(s, family) for s in sentence_table().sentences)


def test_compose_takes_a_target_length_in_tokens() -> None:
    for target in (1, 50, 300, 2000):
        answer = compose(9, 10_000, target_tokens=target)
        assert not answer.truncated
        # Whole sentences while they fit the target (the first one always): within a sentence of it.
        assert answer.tokens <= max(target, 19) and answer.tokens >= target - 19
        assert answer.text.endswith((".", "?", "!"))
    # Same seed, longer target: the shorter answer is where the longer one starts.
    assert compose(9, 10_000, target_tokens=300).text.startswith(compose(9, 10_000, target_tokens=50).text)


def test_prose_reads_like_sentences() -> None:
    text, _ = prose(21, 10_000)
    sentences = [s for s in re.split(r"(?<=[.?!]) ", text) if s]
    assert len(sentences) >= 2
    assert all(s[0].isupper() and 4 <= len(s.split()) <= 8 for s in sentences)
    table = sentence_table()
    assert len(set(table.sentences)) == len(table.sentences) == 4096
    assert table.lengths == tuple(len(s) for s in table.sentences)
    assert any("," in s for s in table.sentences) and any(s.endswith("?") for s in table.sentences)


def test_reseeded_generators_repeat_per_seed_and_per_thread() -> None:
    import threading

    from emulator.fakes.seed import reseeded

    first = reseeded(12345).integers(1 << 62, size=8).tolist()
    other = reseeded(12346).integers(1 << 62, size=8).tolist()
    seen: list[list[int]] = []
    worker = threading.Thread(target=lambda: seen.append(reseeded(12345).integers(1 << 62, size=8).tolist()))
    worker.start()
    worker.join()
    assert first != other
    assert seen == [first] == [reseeded(12345).integers(1 << 62, size=8).tolist()]
