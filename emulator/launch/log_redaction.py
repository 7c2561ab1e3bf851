"""A logging filter that scrubs tokens, API keys and account ids from every server log line and traceback."""

from __future__ import annotations

import logging
import re
import sys

from emulator.cassettes.redact import REDACTED, Redactor

LOGGERS = ("workers_ai_emulator", "aiohttp")
# A credential header quoted in a log line, e.g. aiohttp's parse errors echo the offending raw line
# (`b'Cookie: session=…\x01'`): its value is dropped up to the end of the quoted line.
_CREDENTIAL_HEADER_LINE = re.compile(
    r"(?i)\b(cookie|set-cookie|authorization|proxy-authorization|x-auth-key|x-auth-email"
    r"|x-auth-user-service-key|cf-aig-authorization)(\s*:\s*)[^'\"\r\n]*"
)

# aiohttp's "line too long" error quotes the start of the line it gave up on, without the header's name
# when it is a header value (`b'session=…'` of a long Cookie): the whole quote is dropped.
_LONG_LINE_QUOTE = re.compile(r"(Got more than \d+ bytes when reading)[^\r\n]*")


def redact_log_text(redactor: Redactor, text: str) -> str:
    """A log line or traceback with credential headers and every secret the redactor knows removed."""
    text = _LONG_LINE_QUOTE.sub(lambda m: m.group(1) + ": " + REDACTED, text)
    text = _CREDENTIAL_HEADER_LINE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return redactor.redact_text(text)


class RedactingFilter(logging.Filter):
    """Renders each record (message, arguments, traceback) and replaces it with its redacted text."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ConnectionResetError):
            return False  # a client that went away mid-answer (aborted stream) is not a server error
        record.msg = redact_log_text(self.redactor, record.getMessage())
        record.args = None
        if record.exc_info:
            # Format the traceback now, redacted, so a handler never prints the raw one.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_log_text(self.redactor, text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_log_text(self.redactor, record.stack_info)
        return True


def install(secrets: tuple[str | None, ...] = ()) -> logging.Handler:
    """Send the server's logs to stderr through the redacting filter (the serve path calls this once)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(Redactor(secrets=[s for s in secrets if s])))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False  # the root logger's handlers (if any) would print unredacted text
    return handler
