"""The credential shapes redaction looks for in any text: a token after ``Bearer``, a value after a
credential-like name (``api_key=…``, ``"token": "…"``), a 37-character hex Cloudflare global API key,
an account id after ``accounts/`` and an email address (`redact_shapes`), and the quick test that
a text may hold one (`may_hold_credential`). `redact.Redactor` applies them to every text it
redacts; the helper process (`shapes_process`) applies them to a long piece of one."""

from __future__ import annotations

import re
from typing import NamedTuple

REDACTED = "REDACTED"
REDACTED_EMAIL = "redacted@example.com"

_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_GLOBAL_KEY = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{37}(?![0-9A-Za-z])")
_ACCOUNT_AFTER_ACCOUNTS = re.compile(r"(?i)(accounts/)[0-9a-f]{32}(?![0-9A-Za-z])")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# `"api_key": "…"`, `token=…`, `password: …` inside free text, JSON kept as text, or query strings.
_NAMED_VALUE = re.compile(
    r"""(?ix)
    (?<![A-Za-z0-9_-])
    (?P<name>(?:x[-_]?)?(?:api[-_]?key|api[-_]?token|access[-_]?token|auth[-_]?token|refresh[-_]?token
        |token|authorization|password|passwd|secret|client[-_]?secret|secret[-_]?key|x[-_]auth[-_]key))
    (?P<sep>["']?\s*[:=]\s*["']?)
    (?P<value>[^"'&\s,;}\]]{8,})
    """
)


# What each pattern above cannot match without: '@' (email), ':' or '=' (named value), '/' (accounts/),
# 37 hex digits (global key) or "bearer". Text with none of them skips the five substitutions: replay
# redacts every string of every incoming request, and most prompts have none.
_MAYBE_CREDENTIAL = re.compile(r"[@:=/]|[0-9a-f]{37}|(?i:bearer)")
# The same test at C speed for a long text (`re` scans ~13 MB/s here): in the text's UTF-8 bytes,
# where every ASCII character is its own byte and every other character bytes of 0x80 or more, the
# four marks become `@`, the hex digits `x` and the rest a space; `(?i:bearer)` matches only ASCII
# letters, which `bytes.lower` folds.
_MARKS_AND_HEX = bytes.maketrans(
    bytes(range(256)),
    bytes(b"@"[0] if chr(i) in "@:=/" else b"x"[0] if chr(i) in "0123456789abcdef" else b" "[0]
          for i in range(256)))
_HEX_RUN = b"x" * 37
# Text shorter than this is searched by `re`, which is faster for it than the byte passes.
_SHORT_TEXT = 32


def may_hold_credential(text: str) -> bool:
    """`_MAYBE_CREDENTIAL.search(text) is not None`."""
    if len(text) < _SHORT_TEXT:
        return _MAYBE_CREDENTIAL.search(text) is not None
    data = text.encode("utf-8", "surrogatepass")
    marked = data.translate(_MARKS_AND_HEX)
    return b"@" in marked or _HEX_RUN in marked or b"bearer" in data.lower()


# An ASCII text this long runs only the substitutions whose words it holds (`_wanted`): over 20 MB
# of base64 the five take 3.4 s, the ones such a text can hold ~1 s.
LITERAL_CHECK_CHARS = 1 << 12
# Every name `_NAMED_VALUE` takes holds one of these (api_key, x-auth-key and secret_key hold "key";
# password and passwd "passw"; the *_token names "token").
_NAME_WORDS = (b"key", b"token", b"authorization", b"passw", b"secret")


class _Wanted(NamedTuple):
    bearer: bool
    named_value: bool
    global_key: bool
    account: bool


_EVERY_SHAPE = _Wanted(True, True, True, True)


def _wanted(s: str) -> _Wanted | None:
    """Which of the first four substitutions can change `s`, None when no shape can (what
    `may_hold_credential` says): in a long ASCII text each needs its words (or a run of 37 hex
    digits), which plain searches of its bytes find at C speed, the same passes answering both.
    Only in an ASCII text: `re`'s case-insensitive matching takes some other letters for ASCII ones
    (``ſ`` for ``s``, the Kelvin sign for ``k``). What a substitution puts in (``REDACTED``) holds
    none of the words and no hex digit, and cannot make one with the letters around it, so the words
    found in `s` are those of the text each later substitution sees, or fewer."""
    if len(s) < LITERAL_CHECK_CHARS or not s.isascii():
        return _EVERY_SHAPE if may_hold_credential(s) else None
    data = s.encode("ascii")
    lowered = data.lower()
    marked = data.translate(_MARKS_AND_HEX)
    bearer = b"bearer" in lowered
    global_key = _HEX_RUN in marked
    if not (bearer or global_key or b"@" in marked):
        return None
    return _Wanted(
        bearer=bearer,
        named_value=(b":" in data or b"=" in data) and any(word in lowered for word in _NAME_WORDS),
        global_key=global_key,
        account=b"accounts/" in lowered,
    )


def redact_shapes(s: str, placeholder_account: str) -> str:
    """`s` with bearer tokens, credential-named values, global API keys, account ids after
    ``accounts/`` (as `placeholder_account`) and emails replaced."""
    wanted = _wanted(s)
    if wanted is None:
        return s
    if wanted.bearer:
        s = _BEARER.sub(lambda m: m.group(1) + REDACTED, s)
    if wanted.named_value:
        s = _NAMED_VALUE.sub(lambda m: m.group("name") + m.group("sep") + REDACTED, s)
    if wanted.global_key:
        s = _GLOBAL_KEY.sub(REDACTED, s)
    if wanted.account:
        s = _ACCOUNT_AFTER_ACCOUNTS.sub(lambda m: m.group(1) + placeholder_account, s)
    if "@" not in s:  # the account placeholder may bring one
        return s
    return _EMAIL.sub(REDACTED_EMAIL, s)
