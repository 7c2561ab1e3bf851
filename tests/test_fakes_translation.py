"""Tests for the m2m100 / indictrans2 translation fakes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from emulator.fakes.translation import (
    INDIC_TARGETS,
    LANGUAGES,
    SCRIPT_RANGES,
    script_of,
    translate,
    translate_indic,
)

GUIDE_CODES = (
    "en zh fr de es it ja ko pt ru nl sv no da fi pl tr ar he id th vi hi ms el cs sk ro hu bg hr sr uk"
)
SOURCE = "The weather is lovely today, so we are going for a long walk along the river. Will you join us?"
EXPECTED_SCRIPTS = {
    "zh": "Han",
    "ja": "Kana",
    "ko": "Hangul",
    "ru": "Cyrillic",
    "bg": "Cyrillic",
    "sr": "Cyrillic",
    "uk": "Cyrillic",
    "ar": "Arabic",
    "he": "Hebrew",
    "th": "Thai",
    "hi": "Devanagari",
    "el": "Greek",
}


def _in(ch: str, script: str) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in SCRIPT_RANGES[script])


def _dominant_share(text: str, script: str) -> float:
    punctuation = "。？！।؟"
    letters = [ch for ch in text if ch.isalpha() or (not ch.isascii() and ch not in punctuation)]
    assert letters, text
    return sum(_in(ch, script) for ch in letters) / len(letters)


def test_languages_are_the_guides_33() -> None:
    assert sorted(LANGUAGES) == sorted(GUIDE_CODES.split())
    assert len(LANGUAGES) == 33


@pytest.mark.parametrize("lang", GUIDE_CODES.split())
def test_translation_uses_target_script(lang: str) -> None:
    script = script_of(lang)
    assert script == EXPECTED_SCRIPTS.get(lang, "Latin")
    out = translate(SOURCE, "en", lang, 1)
    assert _dominant_share(out, script) >= 0.95, out
    if script == "Kana":
        several = "".join(translate(SOURCE, "en", "ja", seed) for seed in range(5))
        assert any(0x3040 <= ord(ch) <= 0x30FF for ch in several)
    ratio = 0.5 if lang in ("zh", "ja") else 0.6 if lang == "ko" else 1.0
    assert 0.7 * ratio * len(SOURCE) <= len(out) <= 1.3 * ratio * len(SOURCE)


def test_translation_is_deterministic_and_seeded() -> None:
    assert translate(SOURCE, "en", "fr", 9) == translate(SOURCE, "en", "fr", 9)
    assert translate(SOURCE, "en", "fr", 9) != translate(SOURCE, "en", "fr", 10)
    assert translate(SOURCE, "en", "fr", 9) != translate(SOURCE + " Yes.", "en", "fr", 9)


def test_length_follows_input() -> None:
    assert translate("", "en", "de", 1) == ""
    for text in ("a", "Hi", "ok."):
        assert len(translate(text, "en", "de", 1)) >= 1
        assert len(translate(text, "en", "zh", 1)) >= 1
    long_text = SOURCE * 10
    assert 0.7 * len(long_text) <= len(translate(long_text, "en", "es", 3)) <= 1.3 * len(long_text)
    zh = translate(long_text, "en", "zh", 3)
    assert 0.35 * len(long_text) <= len(zh) <= 0.65 * len(long_text)
    # Going from CJK to Latin script, the text roughly doubles.
    assert len(translate(zh, "zh", "en", 3)) >= 1.4 * len(zh)


def test_codes_are_case_insensitive_and_names_accepted() -> None:
    assert translate(SOURCE, "EN", "FR", 2) == translate(SOURCE, "en", "fr", 2)
    assert translate(SOURCE, "english", "French", 2) == translate(SOURCE, "en", "fr", 2)
    assert script_of("zh-CN") == "Han"


@pytest.mark.parametrize(("source", "target"), [("en", "xx"), ("klingon", "fr"), ("en", "")])
def test_unknown_code_raises(source: str, target: str) -> None:
    bad = target if source in ("en",) else source
    with pytest.raises(ValueError, match=f"unsupported language: {bad}"):
        translate(SOURCE, source, target, 1)


def test_indic_targets_match_catalog_enum() -> None:
    path = Path(__file__).parents[1] / "emulator/catalog/data/indictrans2-en-indic-1B.json"
    enum = json.loads(path.read_text())["schema"]["input"]["properties"]["target_language"]["enum"]
    assert sorted(INDIC_TARGETS) == sorted(enum)


@pytest.mark.parametrize("target", sorted(INDIC_TARGETS))
def test_indic_script(target: str) -> None:
    script = INDIC_TARGETS[target]
    out = translate_indic(SOURCE, target, 4)
    assert out == translate_indic(SOURCE, target, 4)
    assert out != translate_indic(SOURCE, target, 5)
    counts = Counter(_in(ch, script) for ch in out if not ch.isspace() and ch not in ".।")
    assert counts[True] >= 0.95 * sum(counts.values()), out
    assert 0.7 * len(SOURCE) <= len(out) <= 1.3 * len(SOURCE)


def test_indic_unknown_target() -> None:
    with pytest.raises(ValueError, match="unsupported language: xyz_Abcd"):
        translate_indic("hello", "xyz_Abcd", 1)
    assert translate_indic("", "hin_Deva", 1) == ""
    assert len(translate_indic("a", "tam_Taml", 1)) >= 1
