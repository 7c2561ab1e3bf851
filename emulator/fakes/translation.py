"""Seeded fake translations written in the target language's script (m2m100 and indictrans2)."""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np
import orjson

from emulator.fakes.seed import derive_seed, reseeded, rng

# The 33 codes of the free-model guide → the Faker locale whose own data supplies the words.
# 'ms' borrows Indonesian (same script, close vocabulary); 'sr' borrows Croatian and is
# transliterated to Serbian Cyrillic, since Faker has no Serbian-Cyrillic data.
LANGUAGES: dict[str, str] = {
    "en": "en_US",
    "zh": "zh_CN",
    "fr": "fr_FR",
    "de": "de_DE",
    "es": "es_ES",
    "it": "it_IT",
    "ja": "ja_JP",
    "ko": "ko_KR",
    "pt": "pt_PT",
    "ru": "ru_RU",
    "nl": "nl_NL",
    "sv": "sv_SE",
    "no": "no_NO",
    "da": "da_DK",
    "fi": "fi_FI",
    "pl": "pl_PL",
    "tr": "tr_TR",
    "ar": "ar_AA",
    "he": "he_IL",
    "id": "id_ID",
    "th": "th_TH",
    "vi": "vi_VN",
    "hi": "hi_IN",
    "ms": "id_ID",
    "el": "el_GR",
    "cs": "cs_CZ",
    "sk": "sk_SK",
    "ro": "ro_RO",
    "hu": "hu_HU",
    "bg": "bg_BG",
    "hr": "hr_HR",
    "sr": "hr_HR",
    "uk": "uk_UA",
}

_SCRIPT_OF: dict[str, str] = {
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

# m2m100 model cards and clients also spell languages out ('english', 'french', ...).
_NAMES: dict[str, str] = {
    "english": "en",
    "chinese": "zh",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "italian": "it",
    "japanese": "ja",
    "korean": "ko",
    "portuguese": "pt",
    "russian": "ru",
    "dutch": "nl",
    "swedish": "sv",
    "norwegian": "no",
    "danish": "da",
    "finnish": "fi",
    "polish": "pl",
    "turkish": "tr",
    "arabic": "ar",
    "hebrew": "he",
    "indonesian": "id",
    "thai": "th",
    "vietnamese": "vi",
    "hindi": "hi",
    "malay": "ms",
    "greek": "el",
    "czech": "cs",
    "slovak": "sk",
    "romanian": "ro",
    "hungarian": "hu",
    "bulgarian": "bg",
    "croatian": "hr",
    "serbian": "sr",
    "ukrainian": "uk",
    "nb": "no",
    "nn": "no",
    "iw": "he",
    "in": "id",
}

# Inclusive code-point ranges per script; Japanese text legitimately mixes kana and kanji.
SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "Latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF)),
    "Cyrillic": ((0x400, 0x4FF),),
    "Greek": ((0x370, 0x3FF), (0x1F00, 0x1FFF)),
    "Arabic": ((0x600, 0x6FF), (0x750, 0x77F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Hebrew": ((0x590, 0x5FF),),
    "Thai": ((0xE00, 0xE7F),),
    "Devanagari": ((0x900, 0x97F),),
    "Hangul": ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)),
    "Han": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF)),
    "Kana": ((0x3040, 0x30FF), (0x4E00, 0x9FFF), (0x3400, 0x4DBF)),
    "Bengali": ((0x980, 0x9FF),),
    "Gurmukhi": ((0xA00, 0xA7F),),
    "Gujarati": ((0xA80, 0xAFF),),
    "Oriya": ((0xB00, 0xB7F),),
    "Tamil": ((0xB80, 0xBFF),),
    "Telugu": ((0xC00, 0xC7F),),
    "Kannada": ((0xC80, 0xCFF),),
    "Malayalam": ((0xD00, 0xD7F),),
    "Ol Chiki": ((0x1C50, 0x1C7F),),
    "Meetei Mayek": ((0xABC0, 0xABFF),),
}

_ISO15924: dict[str, str] = {
    "Arab": "Arabic",
    "Beng": "Bengali",
    "Deva": "Devanagari",
    "Gujr": "Gujarati",
    "Guru": "Gurmukhi",
    "Knda": "Kannada",
    "Latn": "Latin",
    "Mlym": "Malayalam",
    "Mtei": "Meetei Mayek",
    "Olck": "Ol Chiki",
    "Orya": "Oriya",
    "Taml": "Tamil",
    "Telu": "Telugu",
}

# The enum of @cf/ai4bharat/indictrans2-en-indic-1B's `target_language` → script name.
INDIC_TARGETS: dict[str, str] = {
    code: _ISO15924[code.split("_")[1]]
    for code in (
        "asm_Beng",
        "awa_Deva",
        "ben_Beng",
        "bho_Deva",
        "brx_Deva",
        "doi_Deva",
        "eng_Latn",
        "gom_Deva",
        "gon_Deva",
        "guj_Gujr",
        "hin_Deva",
        "hne_Deva",
        "kan_Knda",
        "kas_Arab",
        "kas_Deva",
        "kha_Latn",
        "lus_Latn",
        "mag_Deva",
        "mai_Deva",
        "mal_Mlym",
        "mar_Deva",
        "mni_Beng",
        "mni_Mtei",
        "npi_Deva",
        "ory_Orya",
        "pan_Guru",
        "san_Deva",
        "sat_Olck",
        "snd_Arab",
        "snd_Deva",
        "tam_Taml",
        "tel_Telu",
        "urd_Arab",
        "unr_Deva",
    )
}

# Characters of output per character of input, relative to Latin-script text.
_DENSITY: dict[str, float] = {"zh": 0.5, "ja": 0.5, "ko": 0.6}
_FULL_STOP: dict[str, str] = {"zh": "。", "ja": "。", "hi": "।", "th": ""}
_QUESTION: dict[str, str] = {"zh": "？", "ja": "？", "ar": "؟"}
_EXCLAIM: dict[str, str] = {"zh": "！", "ja": "！"}
_NO_SPACES = frozenset({"zh", "ja"})
_CASED = frozenset({"Latin", "Cyrillic", "Greek"})

_SERBIAN_DIGRAPHS = (("dž", "џ"), ("lj", "љ"), ("nj", "њ"))
_SERBIAN = str.maketrans(
    "abcčćdđefghijklmnoprsštuvzžqwxy",
    "абцчћдђефгхијклмнопрсштувзжквки",
)
_WORD_SPLIT = re.compile(r"[\s\-–—.,;:!?()/'\"«»„“”·]+")


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in value:
            if isinstance(key, str):
                yield key
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, str):
                yield item


def _to_serbian(word: str) -> str:
    for latin, cyrillic in _SERBIAN_DIGRAPHS:
        word = word.replace(latin, cyrillic)
    return word.translate(_SERBIAN)


def _is_word(word: str) -> bool:
    # isalpha() rejects the combining vowel signs that Brahmic and Thai words are full of.
    return bool(word) and all(unicodedata.category(ch)[0] in "LM" for ch in word)


# Faker provider packages whose per-locale data holds words; lorem first (real vocabulary).
_WORD_SOURCES = ("lorem", "job", "color", "person", "address", "company", "date_time", "currency")


@cache
def _script_re(script: str) -> re.Pattern[str]:
    spans = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in SCRIPT_RANGES[script])
    return re.compile(f"[{spans}ー]+")


# Every language's pool, as `build_word_pool` makes it, ships with the package: a translation then
# neither imports Faker nor reads its per-locale data (~0.2 s for a fresh server's first call, on the
# event loop). tests/test_sentence_tables.py keeps the file equal to what the installed Faker gives.
SHIPPED_POOLS = Path(__file__).with_name("data") / "word-pools.json"


@cache
def _shipped_pools() -> dict[str, list[str]]:
    if not SHIPPED_POOLS.is_file():
        return {}
    pools: dict[str, list[str]] = orjson.loads(SHIPPED_POOLS.read_bytes())["languages"]
    return pools


@cache
def _word_pool(lang: str) -> tuple[str, ...]:
    shipped = _shipped_pools().get(lang)
    return tuple(shipped) if shipped is not None else build_word_pool(lang)


def write_shipped_pools() -> Path:
    """Write every language's pool where `_word_pool` reads it (after a Faker or pool-rule change)."""
    lines = [orjson.dumps(lang) + b": " + orjson.dumps(list(build_word_pool(lang))) for lang in LANGUAGES]
    SHIPPED_POOLS.write_bytes(b'{"languages": {\n' + b",\n".join(lines) + b"\n}}\n")  # a language a line
    return SHIPPED_POOLS


def build_word_pool(lang: str) -> tuple[str, ...]:
    """Words from the locale's own Faker data (lorem first, then jobs, names, places…), in-script only."""
    locale = LANGUAGES[lang]
    script = script_of(lang)
    in_script = _script_re(script).fullmatch
    words: set[str] = set()
    # Importing the provider modules directly skips building a Faker (tens of ms per locale) and
    # never falls back to en_US data, which would leak English words into every language.
    for source in _WORD_SOURCES:
        try:
            module = importlib.import_module(f"faker.providers.{source}.{locale}")
        except ModuleNotFoundError:
            continue
        for value in vars(module.Provider).values():
            for string in _strings(value):
                for word in _WORD_SPLIT.split(string):
                    if script in _CASED:
                        word = word.lower()
                    if lang == "sr":
                        word = _to_serbian(word)
                    if in_script(word) and _is_word(word):
                        words.add(word)
        # A locale's lorem list alone reads like prose; names and places only pad thin ones.
        if len(words) >= 200:
            break
    if len(words) < 50:
        return _pseudo_words(script)
    return tuple(sorted(words))


# Brahmic blocks share the ISCII layout: independent vowels, consonants and vowel signs sit at the
# same offsets, so one slice per block yields everyday letters rather than rare extensions.
_BRAHMIC = frozenset(
    {"Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam"}
)
_LETTER_SPANS: dict[str, tuple[int, int]] = {
    "Arabic": (0x628, 0x64A),
    "Ol Chiki": (0x1C5A, 0x1C77),
    "Meetei Mayek": (0xABC0, 0xABDA),
}
_SIGN_SPANS: dict[str, tuple[int, int]] = {"Meetei Mayek": (0xABE3, 0xABEA)}


def _assigned(lo: int, hi: int, categories: str) -> tuple[str, ...]:
    return tuple(
        chr(cp)
        for cp in range(lo, hi + 1)
        if unicodedata.category(chr(cp)) in categories.split() and unicodedata.name(chr(cp), "") != ""
    )


@cache
def _alphabet(script: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(consonants/letters, dependent vowel signs, independent vowels) of a script's Unicode block."""
    if script == "Latin":
        return tuple("bcdfghjklmnprstvwyz"), tuple("aeiou"), tuple("aeiou")
    if script in _BRAHMIC:
        base = SCRIPT_RANGES[script][0][0]
        consonants = _assigned(base + 0x15, base + 0x39, "Lo")
        # A bare virama would end syllables in a dangling half-consonant.
        marks = _assigned(base + 0x3E, base + 0x4C, "Mn Mc")
        signs = tuple(ch for ch in marks if "VIRAMA" not in unicodedata.name(ch))
        return consonants, signs, _assigned(base + 0x05, base + 0x14, "Lo")
    lo, hi = _LETTER_SPANS.get(script, SCRIPT_RANGES[script][0])
    letters = _assigned(lo, hi, "Lo")
    signs = _assigned(*_SIGN_SPANS[script], "Mn Mc") if script in _SIGN_SPANS else ()
    return letters, signs, ()


@cache
def _pseudo_words(script: str) -> tuple[str, ...]:
    """A fixed vocabulary of pronounceable-looking words built from a script's letters."""
    letters, signs, vowels = _alphabet(script)
    gen = rng(derive_seed("pseudo-words", script))
    words: set[str] = set()
    while len(words) < 400:
        syllables = int(gen.integers(1, 4))
        parts: list[str] = []
        if vowels and gen.random() < 0.15:
            parts.append(vowels[int(gen.integers(len(vowels)))])
        for _ in range(syllables):
            parts.append(letters[int(gen.integers(len(letters)))])
            if signs and gen.random() < 0.6:
                parts.append(signs[int(gen.integers(len(signs)))])
        words.add("".join(parts))
    return tuple(sorted(words))


def _resolve(code: str) -> str:
    key = code.strip().lower()
    if key in LANGUAGES:
        return key
    if key in _NAMES:
        return _NAMES[key]
    base = re.split(r"[-_]", key, maxsplit=1)[0]
    if base in LANGUAGES:
        return base
    raise ValueError(f"unsupported language: {code}")


def script_of(lang: str) -> str:
    """The writing system fake output for `lang` uses: 'Latin', 'Cyrillic', 'Han', 'Kana', …."""
    return _SCRIPT_OF.get(_resolve(lang), "Latin")


def _compose(
    pool: tuple[str, ...],
    gen: np.random.Generator,
    length: int,
    *,
    joiner: str,
    cased: bool,
    stop: str,
    end: str,
) -> str:
    """Sentences of pooled words cut near `length` characters (word boundary), ending with `end`."""
    out: list[str] = []
    size = 0
    while size < length:
        count = int(gen.integers(4, 13))
        picks = gen.integers(len(pool), size=count)
        words = [pool[i] for i in picks]
        if cased:
            words[0] = words[0].capitalize()
        sentence = joiner.join(words) + stop
        if out and stop != "" and joiner:
            sentence = " " + sentence
        elif out:
            sentence = joiner + sentence
        out.append(sentence)
        size += len(sentence)
    text = "".join(out)
    if len(text) > length:
        # Cut at a word boundary when one is near, so the last word is not left dangling.
        text = text[: max(1, length - len(end))]
        space = text.rfind(" ")
        if space >= 0.7 * len(text):
            text = text[:space]
        text = text.rstrip(" .。।?？!！؟")
        if len(text) >= 8 or not text:
            text += end
    return text or pool[0][:1]


def translate(text: str, source_lang: str, target_lang: str, seed: int) -> str:
    """A seeded stand-in translation in the target language's script, about as long as the input."""
    source = _resolve(source_lang)
    target = _resolve(target_lang)
    if not text:
        return ""
    gen = reseeded(derive_seed("translate", text, source, target, seed))
    ratio = _DENSITY.get(target, 1.0) / _DENSITY.get(source, 1.0)
    length = max(1, round(len(text.strip() or text) * ratio * float(gen.uniform(0.9, 1.1))))
    tail = text.rstrip()[-1:]
    if tail in "?？؟":
        end = _QUESTION.get(target, "?")
    elif tail in "!！":
        end = _EXCLAIM.get(target, "!")
    else:
        end = _FULL_STOP.get(target, ".")
    stop = _FULL_STOP.get(target, ".")
    return _compose(
        _word_pool(target),
        gen,
        length,
        joiner="" if target in _NO_SPACES else " ",
        cased=script_of(target) in _CASED,
        stop=stop,
        end=end,
    )


def translate_indic(text: str, target: str, seed: int) -> str:
    """A seeded stand-in IndicTrans2 output for one string, in the target code's script."""
    script = INDIC_TARGETS.get(target)
    if script is None:
        raise ValueError(f"unsupported language: {target}")
    if not text:
        return ""
    gen = reseeded(derive_seed("translate-indic", text, target, seed))
    length = max(1, round(len(text.strip() or text) * float(gen.uniform(0.9, 1.1))))
    pool = _word_pool("en") if target == "eng_Latn" else _pseudo_words(script)
    stop = "।" if script in ("Devanagari", "Bengali") else "."
    return _compose(pool, gen, length, joiner=" ", cased=script == "Latin", stop=stop, end=stop)
