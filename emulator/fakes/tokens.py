"""Token counts close to each model family's real tokenizer and chat template, without shipping a vocabulary.

No tokenizer package on PyPI ships these vocabularies in its wheel (tiktoken and tokenizers download them
at run time; the emulator may not reach the network), so counts come from a calibrated approximation:

- *content*: text is split the way byte-level BPE pre-tokenizers split it (letter runs with their leading
  space, digit runs, punctuation runs, whitespace), and each piece costs what a vocabulary of that family's
  size charges for it (a long word is cut in several pieces; a small vocabulary cuts sooner; digits are
  grouped by three or one at a time as the family's tokenizer does).
- *template*: the special tokens and fixed text each family's chat template wraps around the messages
  (Llama 3.1's "Cutting Knowledge Date" system preamble, gpt-oss's harmony system block, ChatML's role
  markers, the [CLS]/[SEP] or <s>/</s> of embedding encoders).

Measured error against real usage figures (docs/costs.md lists the same table; fixtures/real/ and
fixtures/observations/ hold the captures):

| family | capture | real | here |
|---|---|---|---|
| Llama 3.x | llama-3.1-8b, system + user, `Hello!` answer | 45 prompt, 2 completion | 45, 2 |
| gpt-oss (harmony) | gpt-oss-20b, system + user + one tool | 136 prompt | 136 |
| Kimi (SGLang) | kimi-k2.6, one user message | 13 prompt | 13 |
| XLM-R (bge-m3) | two short texts | 20 input | 20 |

Families without a capture (Llama 2, Mistral, Gemma, Qwen, BERT) use their published templates and the same
piece costs for their vocabulary size; their error is not measured (expect ±10% on English prose).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import Any

from emulator.gil import GilTurns


class Family(enum.Enum):
    LLAMA3 = "llama3"  # tiktoken-style 128k BPE, header/eot template
    LLAMA31 = "llama3.1"  # the same, plus the dated system preamble of 3.1/3.2/3.3
    LLAMA2 = "llama2"  # 32k SentencePiece, [INST] <<SYS>> template
    MISTRAL = "mistral"  # 32k SentencePiece, [INST] template, system folded into the first turn
    GEMMA = "gemma"  # 256k SentencePiece, <start_of_turn> template
    QWEN = "qwen"  # 151k BPE, ChatML
    CHATML = "chatml"  # 32k SentencePiece fine-tunes on ChatML (openchat, hermes, starling, …)
    GPT_OSS = "gpt-oss"  # o200k harmony
    KIMI = "kimi"  # 160k BPE, <|im_user|> template
    BERT = "bert"  # 30k uncased WordPiece: [CLS] … [SEP]
    XLMR = "xlm-r"  # 250k SentencePiece: <s> … </s>


@dataclass(frozen=True, slots=True)
class Vocab:
    whole_word: int  # letters a word may have and still be one token
    piece: int  # letters per extra token past that
    digits: int  # digits per token (3 for tiktoken-style splits, 1 for SentencePiece)
    punct: int  # punctuation characters per token


BIG = Vocab(whole_word=8, piece=5, digits=3, punct=2)
MEDIUM = Vocab(whole_word=7, piece=4, digits=1, punct=2)
SMALL = Vocab(whole_word=5, piece=4, digits=1, punct=1)

VOCAB = {
    Family.LLAMA3: BIG, Family.LLAMA31: BIG, Family.GPT_OSS: BIG, Family.KIMI: BIG,
    Family.QWEN: MEDIUM, Family.GEMMA: MEDIUM,
    # XLM-R's 250k entries are spread over 100 languages: English words split like a 32k vocabulary's.
    Family.XLMR: SMALL, Family.LLAMA2: SMALL, Family.MISTRAL: SMALL, Family.CHATML: SMALL, Family.BERT: SMALL,
}


@dataclass(frozen=True, slots=True)
class Template:
    start: int  # tokens before the first message (BOS, fixed system blocks)
    per_message: int  # role markers around each message
    reply: int  # the generation prompt after the last message
    default_system: int = 0  # a system block the template adds when the caller sent none
    system_preamble: int = 0  # fixed text the template puts before the caller's system content
    per_tool: int = 0  # wrapping per declared tool, on top of its rendered JSON
    tools_block: int = 0  # fixed instructions once any tool is declared


TEMPLATES = {
    # <|begin_of_text|>; <|start_header_id|>role<|end_header_id|>\n\n … <|eot_id|>; assistant header.
    Family.LLAMA3: Template(start=1, per_message=5, reply=4),
    # 3.1+ always open with a system block: "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024".
    Family.LLAMA31: Template(start=1, per_message=5, reply=4, default_system=25, system_preamble=20,
                             per_tool=4, tools_block=40),
    # <s>[INST] <<SYS>>\n…\n<</SYS>>\n\n … [/INST]
    Family.LLAMA2: Template(start=1, per_message=4, reply=0, system_preamble=8),
    Family.MISTRAL: Template(start=1, per_message=4, reply=0),
    # <bos><start_of_turn>role\n … <end_of_turn>\n; <start_of_turn>model\n
    Family.GEMMA: Template(start=1, per_message=5, reply=3),
    # <|im_start|>role\n … <|im_end|>\n; Qwen 2.x adds a default system prompt.
    Family.QWEN: Template(start=0, per_message=5, reply=3, default_system=9, per_tool=2, tools_block=60),
    Family.CHATML: Template(start=0, per_message=5, reply=3),
    # Harmony: the model's own system block (identity, dates, reasoning effort, channels), a developer
    # block for the caller's instructions and tools; <|start|>role<|message|> … <|end|>; <|start|>assistant.
    Family.GPT_OSS: Template(start=50, per_message=4, reply=2, per_tool=12, tools_block=32),
    # <|im_user|>user<|im_middle|> … <|im_end|>; <|im_assistant|>assistant<|im_middle|> and the think tag.
    Family.KIMI: Template(start=0, per_message=4, reply=4, per_tool=4, tools_block=20),
    Family.BERT: Template(start=0, per_message=2, reply=0),
    Family.XLMR: Template(start=0, per_message=2, reply=0),
}

_PIECES = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\w\s]+|_+|\s+")
# A text longer than this is matched a slice at a time: `re` holds the GIL for a whole `findall`
# (~20 ms on 200,000 characters, ~0.5 ms on a slice), and the fakes run on worker threads beside
# the event loop, which takes the GIL between slices (gil.GilTurns).
SLICE_CHARS = 16_384
SLICE_PIECES = 16_384  # pieces priced per step (one C-level sum, ~0.5 ms)


def findall_in_slices(pattern: re.Pattern[str], text: str) -> list[str]:
    r"""`pattern.findall(text)` for a pattern whose matches never span a space between two
    non-space characters (`_PIECES`, `\w+`): the text is cut just before such a space, where one
    match ends and the next begins, so the slices' matches are the whole text's."""
    if len(text) <= SLICE_CHARS:
        return pattern.findall(text)
    found: list[str] = []
    start = 0
    turns = GilTurns()
    while start < len(text):
        cut = _cut_after(text, start + SLICE_CHARS)
        found += pattern.findall(text, start, cut)
        start = cut
        turns.tick()
    return found


def _cut_after(text: str, at: int) -> int:
    """The first position from `at` holding a space between two non-space characters, else the end."""
    while at < len(text) - 1:
        at = text.find(" ", at, len(text) - 1)
        if at < 0:
            break
        if not text[at - 1].isspace() and not text[at + 1].isspace():
            return at
        at += 1
    return len(text)
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]+")


@functools.lru_cache(maxsize=1024)  # a few model names, looked up several times per call
def family_of(model: str) -> Family:
    """The tokenizer family of a model id (by its name: the catalog has no tokenizer field)."""
    name = model.lower()
    if "gpt-oss" in name:
        return Family.GPT_OSS
    if "kimi" in name:
        return Family.KIMI
    if "bge-m3" in name or "m2m100" in name:
        return Family.XLMR
    if "bge-" in name or "distilbert" in name or "reranker" in name:
        return Family.BERT
    if "llama-3.1" in name or "llama-3.2" in name or "llama-3.3" in name or "llama-guard-3" in name:
        return Family.LLAMA31
    if "llama-3" in name or "llama-4" in name:
        return Family.LLAMA3
    if "gemma" in name:
        return Family.GEMMA
    if "qwen" in name or "qwq" in name or "deepseek-r1" in name:
        return Family.QWEN
    if "mistral" in name and "hermes" not in name and "openhermes" not in name:
        return Family.MISTRAL
    if any(k in name for k in ("openchat", "hermes", "starling", "neural-chat", "una-cybertron",
                               "discolm", "zephyr", "tinyllama")):
        return Family.CHATML
    return Family.LLAMA2


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _piece_cost(piece: str, vocab: Vocab) -> int:
    word = piece.lstrip(" ")
    if not word:
        return 1
    first = word[0]
    if first.isspace():
        return max(1, word.count("\n")) if "\n" in word else 1
    if first.isdigit():
        return _ceil(len(word), vocab.digits) + (1 if piece != word and vocab.digits == 1 else 0)
    if not (first.isalpha()):
        return _ceil(len(word), vocab.punct)
    if _LATIN.fullmatch(word) is None:  # CJK and other scripts: about a token per character
        return len(word)
    if len(word) <= vocab.whole_word:
        return 1
    return 1 + _ceil(len(word) - vocab.whole_word, vocab.piece)


# Pieces kept per vocabulary before the cost memo starts over: words repeat across calls (prose, the
# common words of prompts), numbers and rare words mostly do not.
MEMO_PIECES = 65_536


class _PieceCosts(dict[str, int]):
    """Piece → cost in one vocabulary, filled on first sight, so a count is one dict lookup a piece."""

    def __init__(self, vocab: Vocab) -> None:
        super().__init__()
        self.vocab = vocab

    def __missing__(self, piece: str) -> int:
        cost = _piece_cost(piece, self.vocab)
        if len(self) >= MEMO_PIECES:
            self.clear()
        self[piece] = cost
        return cost


_COSTS = {vocab: _PieceCosts(vocab) for vocab in (BIG, MEDIUM, SMALL)}
_FAMILY_COSTS = {family: _COSTS[vocab] for family, vocab in VOCAB.items()}


def text_tokens(text: str, family: Family) -> int:
    """Tokens of `text` alone (no special tokens) in the family's tokenizer, approximately."""
    if not text:
        return 0
    if family is Family.BERT:
        text = text.lower()
    pieces = findall_in_slices(_PIECES, text)
    cost = _FAMILY_COSTS[family].__getitem__
    if len(pieces) <= SLICE_PIECES:
        return sum(map(cost, pieces))
    total = 0
    turns = GilTurns()
    # Priced from the end and dropped as priced: the list freed whole when the function returns
    # (6 million pieces for 17 MB of prose) held the GIL ~50 ms in one step.
    while pieces:
        total += sum(map(cost, pieces[-SLICE_PIECES:]))
        del pieces[-SLICE_PIECES:]
        turns.tick()
    return total


def content_text(content: Any) -> str:
    """Message content as plain text: a string, an array of parts, or one part object."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, list):
        return " ".join(content_text(part) for part in content)
    return str(content)


def _tool_text(tool: Any) -> str:
    """The words a template renders for one tool: name, description, parameter names and types."""
    fn = tool.get("function", tool) if isinstance(tool, dict) else {}
    if not isinstance(fn, dict):
        return ""
    words = [str(fn.get("name") or ""), str(fn.get("description") or "")]
    params = fn.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    for name, spec in (props or {}).items() if isinstance(props, dict) else ():
        kind = spec.get("type", "") if isinstance(spec, dict) else ""
        desc = spec.get("description", "") if isinstance(spec, dict) else ""
        words.append(f"{name}: {kind} {desc}")
    return "\n".join(words)


def _tools_tokens(tools: Any, family: Family, template: Template) -> int:
    if not isinstance(tools, list) or not tools:
        return 0
    return template.tools_block + sum(template.per_tool + text_tokens(_tool_text(t), family) for t in tools)


def chat_prompt_tokens(model: str, messages: list[Any], tools: Any = None) -> int:
    """Prompt tokens of a chat call: the family's template around the messages, plus declared tools."""
    family = family_of(model)
    template = TEMPLATES[family]
    total = template.start + template.reply
    has_system = False
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = text_tokens(content_text(message.get("content")), family)
        if role == "system":
            has_system = True
            content += template.system_preamble
        total += template.per_message + content
    if not has_system:
        total += template.default_system
    return total + _tools_tokens(tools, family, template)


def prompt_text_tokens(model: str, prompt: str) -> int:
    """Prompt tokens of a raw `prompt` call: the model's template wraps it as one user turn."""
    return chat_prompt_tokens(model, [{"role": "user", "content": prompt}])


def encoder_tokens(model: str, texts: list[str]) -> int:
    """Input tokens of an encoder call (embeddings, classification): each text with its two specials."""
    family = family_of(model)
    template = TEMPLATES[family]
    specials = template.per_message if family in (Family.BERT, Family.XLMR) else 0
    counted: dict[str, int] = {}  # a text repeated in the batch is counted once
    total = 0
    for text in texts:
        tokens = counted.get(text)
        if tokens is None:
            tokens = counted[text] = text_tokens(text, family)
        total += specials + tokens
    return total


def completion_tokens(model: str, text: str) -> int:
    """Tokens of generated text (the end-of-turn token is not counted, as in the captures)."""
    return text_tokens(text, family_of(model))
