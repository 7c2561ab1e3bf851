"""toMarkdown: `GET …/ai/tomarkdown/supported` and `POST …/ai/tomarkdown` (multipart `files`, one or many).

Each file gets its own result (`[{id, name, mimeType, format: "markdown", tokens, data}]`, or
`format: "error"` with `error` for a file that cannot be converted), as the REST page shows
(https://developers.cloudflare.com/workers-ai/features/markdown-conversion/usage/rest-api/). Documents
are converted for real (emulator/markdown/convert.py, off the event loop). Images go through the two
models Cloudflare documents for them, `@cf/facebook/detr-resnet-50` then `@cf/google/gemma-3-12b-it`,
as ordinary calls: admitted, faultable, charged and logged as those models are.

`to_markdown` is the one entry point; the env.AI binding's `toMarkdown()` calls it with the same documents.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError

from emulator.accounting.pricing import round_neurons
from emulator.call import BinaryInput, Call, CallReport, Surface
from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.fakes import text as text_fake
from emulator.limits import body_refused
from emulator.markdown import formats
from emulator.markdown.convert import ConversionError, convert, svg_to_png
from emulator.markdown.options import ConversionOptions
from emulator.server.paths import Kind, Route
from emulator.server.pipeline import execute
from emulator.server.render import CALL_REPORT, NEURONS, REQ_ID, envelope, json_response
from emulator.server.state import ServerState

DETECTION_MODEL = "@cf/facebook/detr-resnet-50"
DESCRIPTION_MODEL = "@cf/google/gemma-3-12b-it"
FILE_FIELDS = ("files", "files[]")  # curl -F files=@…; the cloudflare SDK sends `files[]`
DESCRIPTION_PROMPT = "Describe this image in detail."
LANGUAGES = {"en": "English", "it": "Italian", "de": "German", "es": "Spanish", "fr": "French",
             "pt": "Portuguese"}
ID_NAMESPACE = uuid.UUID("0b7cf5e2-2a53-4b5e-9d43-3f4f1f1f7a10")


@dataclass(slots=True)
class Document:
    name: str
    data: bytes
    content_type: str = ""


@dataclass(slots=True)
class Converted:
    results: list[dict[str, Any]]
    neurons: float  # what the image models cost, summed
    calls: list[CallReport]  # the image model calls, in order (a refused one as far as it got)

    def report(self, surface: str, request_id: str) -> CallReport:
        """One report for the request: what all its image calls cost, whether a fault fired in any,
        and the model, source, stub and faults of the last call that names them."""
        last = self.calls[-1] if self.calls else None
        return CallReport(
            last.model if last else None, surface, request_id,
            source=next((c.source for c in reversed(self.calls) if c.source is not None), None),
            neurons=self.neurons,
            stub_id=next((c.stub_id for c in reversed(self.calls) if c.stub_id is not None), None),
            fault_ids=next((c.fault_ids for c in reversed(self.calls) if c.fault_ids), ()),
            faulted=any(c.faulted for c in self.calls),
        )


async def to_markdown(state: ServerState, *, account_id: str, request_id: str, path: str,
                      documents: list[Document], options: ConversionOptions) -> Converted:
    converted = Converted([], 0.0, [])
    for document in documents:
        result, cost = await _one(state, account_id, request_id, path, document, options, converted.calls)
        converted.results.append(result)
        converted.neurons += cost
    return converted


def _id(document: Document) -> str:
    digest = hashlib.sha256(document.name.encode() + b"\0" + document.data).hexdigest()
    return str(uuid.uuid5(ID_NAMESPACE, digest))


async def _one(state: ServerState, account_id: str, request_id: str, path: str, document: Document,
               options: ConversionOptions, calls: list[CallReport]) -> tuple[dict[str, Any], float]:
    """One document's result and what its image calls cost; their reports are added to `calls`."""
    found = formats.detect(document.name, document.content_type, document.data)
    mime = found.mime_type if found else (document.content_type or "application/octet-stream")
    head = {"id": _id(document), "name": document.name, "mimeType": mime}
    if found is None:
        return {**head, "format": "error", "error": f"Unsupported file type: {document.name}"}, 0.0
    cost = 0.0
    try:
        if found.kind is formats.Kind.SVG:  # described from its rendering, like the other images
            png = await asyncio.to_thread(svg_to_png, document.data)
            rendered = dataclasses.replace(document, data=png)
            markdown, cost = await _describe(state, account_id, request_id, path, rendered, "image/png",
                                             options, calls)
        elif found.kind is formats.Kind.IMAGE:
            markdown, cost = await _describe(state, account_id, request_id, path, document, mime, options,
                                             calls)
        else:
            markdown = await asyncio.to_thread(convert, found.kind, document.name, document.data, options)
    except ConversionError as exc:
        return {**head, "format": "error", "error": str(exc)}, cost
    except CFError as exc:  # an image model refused (daily allowance, injected fault…)
        if exc.call is not None:
            calls.append(exc.call)
        return {**head, "format": "error", "error": exc.message}, cost
    # `tokens` is a number in the documented examples (the SDK's type says string; either parses).
    return {**head, "format": "markdown", "tokens": text_fake.count_tokens(markdown), "data": markdown}, cost


async def _describe(state: ServerState, account_id: str, request_id: str, path: str, document: Document,
                    mime: str, options: ConversionOptions, calls: list[CallReport]) -> tuple[str, float]:
    from emulator.tasks._media import image_size

    try:
        await asyncio.to_thread(image_size, document.data)
    except CFError:
        raise ConversionError(f"{document.name} is not a readable image") from None
    detector = state.catalog.get(DETECTION_MODEL)
    describer = state.catalog.get(DESCRIPTION_MODEL)
    assert detector is not None and describer is not None, "the catalog ships both image models"
    def call(model: Model, inputs: dict[str, Any] | BinaryInput) -> Call:
        return Call(model=model, inputs=inputs, surface=Surface.NATIVE, account_id=account_id,
                    request_id=request_id, path=path)

    detected = await execute(state, call(detector, BinaryInput(document.data, mime)))
    calls.append(detected.report)
    labels = [str(o.get("label")) for o in detected.outcome.result or [] if isinstance(o, dict)]
    prompt = DESCRIPTION_PROMPT
    if labels:
        prompt += " Objects detected in it: " + ", ".join(dict.fromkeys(labels)) + "."
    language = options.image.descriptionLanguage
    if language and language != "en":
        prompt += f" Answer in {LANGUAGES[language]}."
    data_uri = f"data:{mime};base64," + base64.b64encode(document.data).decode()
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt},
                                              {"type": "image_url", "image_url": {"url": data_uri}}]}]
    described = await execute(state, call(describer, {"messages": messages}))
    calls.append(described.report)
    result = described.outcome.result if isinstance(described.outcome.result, dict) else {}
    return str(result.get("response") or "").strip(), detected.neurons + described.neurons


async def handle_supported(request: web.Request, route: Route, state: ServerState, request_id: str
                           ) -> web.StreamResponse:
    return json_response(envelope(formats.supported()))


async def handle_transform(request: web.Request, route: Route, state: ServerState, request_id: str
                           ) -> web.StreamResponse:
    if not (request.content_type or "").startswith("multipart/"):
        raise CFError(ErrorKind.INCOMPLETE_REQUEST, what="a multipart/form-data body with `files`")
    documents, options = await _read_form(request)
    if not documents:
        raise CFError(ErrorKind.INCOMPLETE_REQUEST, what="files")
    converted = await to_markdown(state, account_id=route.account_id, request_id=request_id,
                                  path=request.path, documents=documents, options=options)
    headers = {REQ_ID: request_id, NEURONS: round_neurons(converted.neurons)}
    response = json_response(envelope(converted.results), headers=headers)
    # One log line for the request, with what all its image calls cost.
    response[CALL_REPORT] = converted.report(Kind.TOMARKDOWN.value, request_id)
    return response


async def _read_form(request: web.Request) -> tuple[list[Document], ConversionOptions]:
    documents: list[Document] = []
    options = ConversionOptions()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name in FILE_FIELDS:
                data = bytes(await part.read(decode=True))
                name = part.filename or f"file{len(documents) + 1}"
                documents.append(Document(name, data, part.headers.get("Content-Type", "")))
            elif part.name == "conversionOptions":
                options = _options(bytes(await part.read(decode=True)))
            else:
                await part.release()
    except RequestPayloadError:  # not its Content-Encoding, or broken chunked framing
        raise body_refused(request) from None
    except (ValueError, HttpProcessingError) as exc:  # aiohttp's multipart parser raises both
        raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: malformed multipart body ({exc})") from None
    return documents, options


def _options(raw: bytes) -> ConversionOptions:
    try:
        return ConversionOptions.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first.get("loc", ()))
        raise CFError(
            ErrorKind.BAD_INPUT,
            detail=f"Error: conversionOptions/{where}: {first.get('msg')}") from None

