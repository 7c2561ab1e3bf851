"""The document formats toMarkdown converts, and how a file's format is recognised.

The list is what the emulator converts for real (a subset of Cloudflare's list at
https://developers.cloudflare.com/workers-ai/features/markdown-conversion/supported-formats/: OpenDocument,
Apple Numbers, legacy `.xls`/`.et` and SVG are not converted here). A file is recognised by its
name's extension, then by the part's content type, then by its first bytes.
"""

from __future__ import annotations

import enum
import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath


class Kind(enum.StrEnum):
    HTML = "html"
    XML = "xml"
    CSV = "csv"
    PDF = "pdf"
    XLSX = "xlsx"
    DOCX = "docx"
    IMAGE = "image"


@dataclass(frozen=True, slots=True)
class Format:
    extension: str
    mime_type: str
    kind: Kind


XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
FORMATS: tuple[Format, ...] = (
    Format(".pdf", "application/pdf", Kind.PDF),
    Format(".jpeg", "image/jpeg", Kind.IMAGE),
    Format(".jpg", "image/jpeg", Kind.IMAGE),
    Format(".png", "image/png", Kind.IMAGE),
    Format(".webp", "image/webp", Kind.IMAGE),
    Format(".html", "text/html", Kind.HTML),
    Format(".htm", "text/html", Kind.HTML),
    Format(".xml", "application/xml", Kind.XML),
    Format(".xlsx", XLSX_MIME, Kind.XLSX),
    Format(".xlsm", "application/vnd.ms-excel.sheet.macroenabled.12", Kind.XLSX),
    Format(".docx", DOCX_MIME, Kind.DOCX),
    Format(".csv", "text/csv", Kind.CSV),
)
BY_EXTENSION = {f.extension: f for f in FORMATS}
BY_MIME = {f.mime_type: f for f in FORMATS} | {"text/xml": BY_EXTENSION[".xml"]}


def supported() -> list[dict[str, str]]:
    """`GET tomarkdown/supported`: `[{extension, mimeType}]` (to_markdown_supported_response.py)."""
    return [{"extension": f.extension, "mimeType": f.mime_type} for f in FORMATS]


def detect(name: str, content_type: str, data: bytes) -> Format | None:
    by_name = BY_EXTENSION.get(PurePosixPath(name).suffix.lower())
    if by_name is not None:
        return by_name
    by_type = BY_MIME.get(content_type.split(";", 1)[0].strip().lower())
    if by_type is not None:
        return by_type
    return _sniff(data)


def _sniff(data: bytes) -> Format | None:
    head = data[:512].lstrip()
    if data.startswith(b"%PDF-"):
        return BY_EXTENSION[".pdf"]
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return BY_EXTENSION[".png"]
    if data.startswith(b"\xff\xd8\xff"):
        return BY_EXTENSION[".jpeg"]
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return BY_EXTENSION[".webp"]
    if data.startswith(b"PK\x03\x04"):
        try:
            names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
        except zipfile.BadZipFile:
            return None
        if "word/document.xml" in names:
            return BY_EXTENSION[".docx"]
        if "xl/workbook.xml" in names:
            return BY_EXTENSION[".xlsx"]
        return None
    lowered = head[:64].lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return BY_EXTENSION[".html"]
    if lowered.startswith(b"<?xml") or lowered.startswith(b"<"):
        return BY_EXTENSION[".xml"]
    return None
