"""The document formats toMarkdown converts, and how a file's format is recognised.

The list is what the emulator converts for real, in the order of Cloudflare's list at
https://developers.cloudflare.com/workers-ai/features/markdown-conversion/supported-formats/ (which
also has `.xlsb`, not converted here). That page gives one MIME type for `.xls` and `.et` (WPS
Spreadsheets, which writes the same BIFF8 workbooks): both list `application/vnd.ms-excel`
(inferred). SVG is an image there, described by the image models like the others. A file is
recognised by its name's extension, then by the part's content type, then by its first bytes.
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
    XLS = "xls"
    DOCX = "docx"
    ODS = "ods"
    ODT = "odt"
    NUMBERS = "numbers"
    IMAGE = "image"
    SVG = "svg"  # an image, rasterised for the image models


@dataclass(frozen=True, slots=True)
class Format:
    extension: str
    mime_type: str
    kind: Kind


XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLS_MIME = "application/vnd.ms-excel"
ODS_MIME = "application/vnd.oasis.opendocument.spreadsheet"
ODT_MIME = "application/vnd.oasis.opendocument.text"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the compound file of .xls (and .doc …)
FORMATS: tuple[Format, ...] = (
    Format(".pdf", "application/pdf", Kind.PDF),
    Format(".jpeg", "image/jpeg", Kind.IMAGE),
    Format(".jpg", "image/jpeg", Kind.IMAGE),
    Format(".png", "image/png", Kind.IMAGE),
    Format(".webp", "image/webp", Kind.IMAGE),
    Format(".svg", "image/svg+xml", Kind.SVG),
    Format(".html", "text/html", Kind.HTML),
    Format(".htm", "text/html", Kind.HTML),
    Format(".xml", "application/xml", Kind.XML),
    Format(".xlsx", XLSX_MIME, Kind.XLSX),
    Format(".xlsm", "application/vnd.ms-excel.sheet.macroenabled.12", Kind.XLSX),
    Format(".xls", XLS_MIME, Kind.XLS),
    Format(".et", XLS_MIME, Kind.XLS),
    Format(".docx", DOCX_MIME, Kind.DOCX),
    Format(".ods", ODS_MIME, Kind.ODS),
    Format(".odt", ODT_MIME, Kind.ODT),
    Format(".csv", "text/csv", Kind.CSV),
    Format(".numbers", "application/vnd.apple.numbers", Kind.NUMBERS),
)
BY_EXTENSION = {f.extension: f for f in FORMATS}
BY_MIME = {f.mime_type: f for f in reversed(FORMATS)} | {"text/xml": BY_EXTENSION[".xml"]}


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
    if data.startswith(OLE2_MAGIC):
        return BY_EXTENSION[".xls"]
    if data.startswith(b"PK\x03\x04"):
        return _sniff_zip(data)
    lowered = head[:64].lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return BY_EXTENSION[".html"]
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in head.lower()):
        return BY_EXTENSION[".svg"]
    if lowered.startswith(b"<?xml") or lowered.startswith(b"<"):
        return BY_EXTENSION[".xml"]
    return None


def _sniff_zip(data: bytes) -> Format | None:
    """Office Open XML, OpenDocument (its `mimetype` member) or an Apple Numbers package."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        mimetype = archive.read("mimetype")[:100].decode("ascii", "replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, KeyError, OSError):
        return None
    if "word/document.xml" in names:
        return BY_EXTENSION[".docx"]
    if "xl/workbook.xml" in names:
        return BY_EXTENSION[".xlsx"]
    if mimetype in (ODS_MIME, ODT_MIME):
        return BY_MIME[mimetype]
    if "Index/Document.iwa" in names:
        return BY_EXTENSION[".numbers"]
    return None
