"""Document → Markdown converters, one per format, pure functions of the bytes (run off the event loop).

HTML follows Cloudflare's documented pre-processing
(https://developers.cloudflare.com/workers-ai/features/markdown-conversion/how-it-works/): `script` and
`style` dropped, `header`/`footer`/`head` removed unless `cssSelector` picks the content, relative links
resolved against `<base>` (or the `hostname` option), JSON-LD appended at the end. PDFs get the
`# name / ## Metadata / ## Contents / ### Page N` layout of the documented example output. The
layout of the other formats is not documented: headings per sheet and Markdown tables (emulator's choice).

Libraries: markdownify (HTML), pypdf, openpyxl (.xlsx/.xlsm), xlrd (.xls/.et), mammoth (.docx), odfpy
(.ods/.odt), numbers-parser (.numbers), resvg-py (SVG, rasterised to PNG for the image models).
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from xml.etree import ElementTree

from emulator.markdown.formats import Kind
from emulator.markdown.options import ConversionOptions

MAX_ROWS = 10_000  # per sheet or CSV: a bigger table is cut with a note, so one request stays bounded
MAX_COLUMNS = 1_024  # per row: OpenDocument can repeat an empty cell across the whole sheet width
SVG_WIDTH = 512  # pixels of the PNG an SVG is rendered to, whatever size it declares
MAX_XML_DEPTH = 64


class ConversionError(ValueError):
    """A file that cannot be converted; its message becomes the per-file `error`."""


def convert(kind: Kind, name: str, data: bytes, options: ConversionOptions) -> str:
    """Markdown of one document (images are described by models, not here)."""
    try:
        if kind is Kind.HTML:
            return html_to_markdown(_text(data), options)
        if kind is Kind.XML:
            return xml_to_markdown(data)
        if kind is Kind.CSV:
            return csv_to_markdown(_text(data))
        if kind is Kind.PDF:
            return pdf_to_markdown(name, data, options)
        if kind is Kind.XLSX:
            return xlsx_to_markdown(name, data)
        if kind is Kind.DOCX:
            return docx_to_markdown(data)
        if kind is Kind.XLS:
            return xls_to_markdown(name, data)
        if kind is Kind.ODS:
            return ods_to_markdown(name, data)
        if kind is Kind.ODT:
            return odt_to_markdown(data)
        if kind is Kind.NUMBERS:
            return numbers_to_markdown(name, data)
    except ConversionError:
        raise
    except Exception as exc:  # every library raises its own types for a broken file
        raise ConversionError(f"Failed to convert {name}: {type(exc).__name__}: {exc}") from None
    raise ConversionError(f"{name}: no converter for {kind}")


def _text(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def html_to_markdown(html: str, options: ConversionOptions) -> str:
    from bs4 import BeautifulSoup
    from markdownify import UNDERSCORE, MarkdownConverter

    soup = BeautifulSoup(html, "html.parser")
    json_ld = [tag.get_text() for tag in soup.find_all("script", attrs={"type": "application/ld+json"})]
    base_tag = soup.find("base", href=True)
    base = str(base_tag["href"]) if base_tag is not None else None
    if base is None and options.html.hostname:
        host = options.html.hostname
        base = host if "://" in host else f"https://{host}/"
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    if options.html.cssSelector:
        kept = soup.select(options.html.cssSelector)
        body = "".join(str(tag) for tag in kept)
        soup = BeautifulSoup(body, "html.parser")
    else:
        for tag in soup(["head", "header", "footer"]):
            tag.decompose()
    if base:
        for tag in soup.find_all(["a", "img"]):
            attr = "href" if tag.name == "a" else "src"
            if tag.get(attr) and not str(tag[attr]).startswith(("data:", "#", "mailto:")):
                tag[attr] = urljoin(base, str(tag[attr]))
    converter = MarkdownConverter(heading_style="ATX", strong_em_symbol=UNDERSCORE, bullets="-")
    markdown = converter.convert_soup(soup)
    markdown = _squeeze(markdown)
    for block in json_ld:
        markdown += "\n\n```json\n" + _pretty_json(block) + "\n```"
    return markdown + "\n" if markdown else ""


def _pretty_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text.strip()


def _squeeze(markdown: str) -> str:
    lines = [line.rstrip() for line in markdown.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def table(rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; the first row is the header. Pipes and newlines in cells are escaped."""
    width = max((len(r) for r in rows), default=0)
    if width == 0:
        return ""

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()

    padded = [[cell(v) for v in row] + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(padded[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(row) + " |" for row in padded[1:]]
    return "\n".join(lines)


def _bounded(rows: Iterable[Sequence[Any]]) -> tuple[list[Sequence[Any]], bool]:
    kept: list[Sequence[Any]] = []
    for row in rows:
        if len(kept) == MAX_ROWS + 1:
            return kept, True
        kept.append(row)
    return kept, False


def _trim(rows: list[Sequence[Any]]) -> list[Sequence[Any]]:
    """Drop trailing empty cells and empty rows (spreadsheets report their whole used range)."""
    out: list[Sequence[Any]] = []
    for row in rows:
        values = list(row)
        while values and values[-1] in (None, ""):
            values.pop()
        out.append(values)
    while out and not out[-1]:
        out.pop()
    return out


def csv_to_markdown(text: str) -> str:
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows, cut = _bounded(csv.reader(io.StringIO(text), dialect))
    rows = _trim(rows)
    if not rows:
        return ""
    return table(rows) + (f"\n\n_(table cut at {MAX_ROWS} rows)_" if cut else "") + "\n"


def xml_to_markdown(data: bytes) -> str:
    try:
        root = ElementTree.fromstring(data)  # expat refuses entity-expansion bombs itself
    except ElementTree.ParseError as exc:
        raise ConversionError(f"Invalid XML: {exc}") from None
    lines: list[str] = []
    _xml_outline(root, 0, lines)
    return "\n".join(lines) + "\n"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_outline(element: ElementTree.Element, depth: int, lines: list[str]) -> None:
    if depth > MAX_XML_DEPTH:
        raise ConversionError("XML nested too deeply")
    attrs = ", ".join(f"{_local(k)}={v}" for k, v in element.attrib.items())
    text = (element.text or "").strip()
    line = "  " * depth + f"- **{_local(str(element.tag))}**"
    if attrs:
        line += f" ({attrs})"
    if text:
        line += f": {text}"
    lines.append(line)
    for child in element:
        _xml_outline(child, depth + 1, lines)


def pdf_to_markdown(name: str, data: bytes, options: ConversionOptions) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise ConversionError(f"Invalid PDF: {exc}") from None
    out = [f"# {name}"]
    if options.pdf.metadata:
        out.append("## Metadata")
        out.append(f"- PDFFormatVersion={reader.pdf_header.removeprefix('%PDF-')}")
        out.append(f"- IsEncrypted={str(reader.is_encrypted).lower()}")
        for key, value in sorted((reader.metadata or {}).items()):
            out.append(f"- {str(key).lstrip('/')}={value}")
        out.append("")
    out.append("## Contents")
    for number, text in enumerate(pages, 1):
        out.append(f"### Page {number}")
        out.append(text.strip())
        out.append("")
    return "\n".join(out)


def _sheets(name: str, sheets: Iterable[tuple[str, Iterable[Sequence[Any]]]]) -> str:
    out = [f"# {name}"]
    for title, rows in sheets:
        kept, cut = _bounded(rows)
        kept = _trim(kept)
        out.append(f"## {title}")
        out.append(table(kept) if kept else "_(empty sheet)_")
        if cut:
            out.append(f"_(sheet cut at {MAX_ROWS} rows)_")
        out.append("")
    return "\n".join(out)


def xlsx_to_markdown(name: str, data: bytes) -> str:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        return _sheets(name, ((sheet.title, sheet.iter_rows(values_only=True)) for sheet in book.worksheets))
    finally:
        book.close()


def docx_to_markdown(data: bytes) -> str:
    import mammoth

    # Embedded images are left out (their bytes would otherwise become data URIs in the text).
    html = mammoth.convert_to_html(io.BytesIO(data), convert_image=mammoth.images.img_element(
        lambda image: {"src": ""})).value
    return html_to_markdown(html, ConversionOptions())


def _plain(value: Any) -> Any:
    """A cell value as a person reads it: whole numbers without `.0`, dates in ISO form."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def xls_to_markdown(name: str, data: bytes) -> str:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except xlrd.XLRDError as exc:
        raise ConversionError(f"Invalid .xls workbook: {exc}") from None

    def cell(item: Any) -> Any:
        if item.ctype == xlrd.XL_CELL_DATE:
            return xlrd.xldate_as_datetime(item.value, book.datemode)
        if item.ctype == xlrd.XL_CELL_BOOLEAN:
            return bool(item.value)
        return None if item.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK) else item.value

    def rows(sheet: Any) -> Iterable[list[Any]]:
        for index in range(sheet.nrows):
            yield [_plain(cell(item)) for item in sheet.row(index)[:MAX_COLUMNS]]

    try:
        return _sheets(name, ((sheet.name, rows(sheet)) for sheet in book.sheets()))
    finally:
        book.release_resources()


def _odf(data: bytes) -> Any:
    from odf.opendocument import load

    return load(io.BytesIO(data))


def _repeat(element: Any, attribute: str, limit: int) -> int:
    raw = element.getAttribute(attribute)
    return max(1, min(int(raw), limit)) if raw and str(raw).isdigit() else 1


def ods_to_markdown(name: str, data: bytes) -> str:
    from odf import table as odf_table
    from odf import teletype

    document = _odf(data)

    def value(cell: Any) -> Any:
        kind = cell.getAttribute("valuetype")
        if kind in ("float", "percentage", "currency"):
            return _plain(float(cell.getAttribute("value")))
        if kind == "boolean":
            return cell.getAttribute("booleanvalue") == "true"
        if kind == "date":
            return cell.getAttribute("datevalue")
        return "\n".join(teletype.extractText(p) for p in cell.childNodes if p.qname[1] == "p") or None

    def rows(sheet: Any) -> Iterable[list[Any]]:
        empty = 0
        for row in sheet.getElementsByType(odf_table.TableRow):
            cells: list[Any] = []
            for cell in row.childNodes:
                if cell.qname[1] in ("table-cell", "covered-table-cell"):
                    cells += [value(cell)] * _repeat(cell, "numbercolumnsrepeated", MAX_COLUMNS - len(cells))
                if len(cells) >= MAX_COLUMNS:
                    break
            repeat = _repeat(row, "numberrowsrepeated", MAX_ROWS + 1)
            if all(c in (None, "") for c in cells):  # empty rows count only when something follows
                empty = min(empty + repeat, MAX_ROWS + 1)
                continue
            yield from [[]] * empty
            empty = 0
            yield from [cells] * repeat

    sheets = document.spreadsheet.getElementsByType(odf_table.Table)
    return _sheets(name, ((sheet.getAttribute("name"), rows(sheet)) for sheet in sheets))


def odt_to_markdown(data: bytes) -> str:
    from odf import teletype

    document = _odf(data)
    out: list[str] = []

    def walk(node: Any, depth: int) -> None:
        kind = node.qname[1] if getattr(node, "qname", None) else ""
        if kind == "h":
            level = _repeat(node, "outlinelevel", 6)
            out.append("#" * level + " " + teletype.extractText(node).strip())
        elif kind == "p":
            text = teletype.extractText(node).strip()
            if text:
                out.append(text)
        elif kind == "list":
            for item in node.childNodes:
                text = " ".join(teletype.extractText(p).strip() for p in item.childNodes
                                if getattr(p, "qname", ("", ""))[1] == "p")
                out.append("  " * depth + "- " + text)
                for child in item.childNodes:
                    if getattr(child, "qname", ("", ""))[1] == "list":
                        walk(child, depth + 1)
        elif kind == "table":
            rows = [[teletype.extractText(cell).strip() for cell in row.childNodes
                     if cell.qname[1] == "table-cell"][:MAX_COLUMNS]
                    for row in node.getElementsByType(_odf_row())][: MAX_ROWS + 1]
            if rows:
                out.append(table(rows))
        else:
            for child in node.childNodes:
                walk(child, depth)

    walk(document.text, 0)
    return "\n\n".join(out) + "\n"


def _odf_row() -> Any:
    from odf.table import TableRow

    return TableRow


def numbers_to_markdown(name: str, data: bytes) -> str:
    from numbers_parser import Document

    # numbers-parser opens a path (a package directory or its zip), not bytes.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "document.numbers"
        path.write_bytes(data)
        document = Document(str(path))
        sheets: list[tuple[str, Iterable[Sequence[Any]]]] = []
        for sheet in document.sheets:
            for one in sheet.tables:
                title = sheet.name if len(sheet.tables) == 1 else f"{sheet.name}: {one.name}"
                values = one.rows(values_only=True)[: MAX_ROWS + 1]
                sheets.append((title, [[_plain(v) for v in row[:MAX_COLUMNS]] for row in values]))
        return _sheets(name, sheets)


def svg_to_png(data: bytes) -> bytes:
    """An SVG rendered to a PNG `SVG_WIDTH` pixels wide (resvg: no external files, no network)."""
    import resvg_py

    try:
        text = data.decode("utf-8-sig")
        return bytes(resvg_py.svg_to_bytes(svg_string=text, width=SVG_WIDTH, skip_system_fonts=True))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConversionError(f"Invalid SVG: {exc}") from None
