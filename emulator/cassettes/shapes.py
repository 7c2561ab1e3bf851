"""The credential shapes redaction looks for in any text: a token after ``Bearer``, a value after a
credential-like name (``api_key=…``, ``"token": "…"``), a 37-character hex Cloudflare global API key,
an account id after ``accounts/`` and an email address (`redact_shapes`), and the quick test that
a text may hold one (`may_hold_credential`). `redact.Redactor` applies them to every text it
redacts; the helper process (`shapes_process`) applies them to a long piece of one."""

from __future__ import annotations

import re

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


def redact_shapes(s: str, placeholder_account: str) -> str:
    """`s` with bearer tokens, credential-named values, global API keys, account ids after
    ``accounts/`` (as `placeholder_account`) and emails replaced."""
    if not may_hold_credential(s):
        return s
    s = _BEARER.sub(lambda m: m.group(1) + REDACTED, s)
    s = _NAMED_VALUE.sub(lambda m: m.group("name") + m.group("sep") + REDACTED, s)
    s = _GLOBAL_KEY.sub(REDACTED, s)
    s = _ACCOUNT_AFTER_ACCOUNTS.sub(lambda m: m.group(1) + placeholder_account, s)
    return _EMAIL.sub(REDACTED_EMAIL, s)
