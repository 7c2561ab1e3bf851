"""Fine-tune endpoints: `GET/POST …/ai/finetunes`, `POST …/finetunes/{id}/finetune-assets`,
`GET …/finetunes/public` (shapes: cloudflare-python `types/ai/finetune*`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.finetunes import assets, lora
from emulator.finetunes.store import PUBLIC_PREFIX, FinetuneStore, NameTaken, public_finetunes
from emulator.limits import body_refused, read_body
from emulator.server.inputs import parse_json
from emulator.server.paths import Route
from emulator.server.relay import forwarder
from emulator.server.render import envelope, json_response
from emulator.server.state import ServerState

# "You can test up to 30 LoRA adapters per account" (fine-tunes/loras page).
MAX_FINETUNES = 30
CHUNK = 256 * 1024


def finetune_store(state: ServerState) -> FinetuneStore:
    """The server's one store, opened on first use in the data directory."""
    if state.finetunes is None:
        state.finetunes = FinetuneStore(state.settings.resolved_data_dir())
    return state.finetunes


def resolve_lora(state: ServerState, route: Route, model: Model, inputs: dict[str, Any], request_id: str
                 ) -> None:
    """Check a request's `lora` against the local store; with a real API behind the emulator
    (replay/record/passthrough) fine-tunes live there, and so does the check."""
    # Only a request naming a `lora` opens the store (a SQLite file: ~20 ms the first time, on the loop).
    if "lora" in inputs and forwarder(state) is None:
        lora.resolve(finetune_store(state), route.account_id, model, inputs, request_id)


def _bad(detail: str) -> CFError:
    return CFError(ErrorKind.BAD_INPUT, detail=f"Error: {detail}")


def _string(body: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise _bad(f"required properties at '/' are '{key}'")
        return None
    if not isinstance(value, str):
        raise _bad(f"Type mismatch of '/{key}', '{type(value).__name__}' not in 'string'")
    return value


async def handle_list(request: web.Request, route: Route, state: ServerState, request_id: str
                      ) -> web.StreamResponse:
    rows = [f.listing() for f in finetune_store(state).listing(route.account_id)]
    return json_response(envelope(rows))


async def handle_public(request: web.Request, route: Route, state: ServerState, request_id: str
                        ) -> web.StreamResponse:
    rows = [f.model_dump() for f in public_finetunes()]
    order = request.query.get("orderBy")
    if order:
        if order not in rows[0]:
            raise CFError(ErrorKind.INVALID_QUERY, name="orderBy", detail=f"no column {order!r}")
        rows.sort(key=lambda row: str(row[order]))
    offset = _count(request, "offset", 0)
    limit = _count(request, "limit", len(rows))
    return json_response(envelope(rows[offset:offset + limit]))


def _count(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):  # OverflowError: "1e400" is an infinite float
        raise CFError(ErrorKind.INVALID_QUERY, name=name, detail="not a number") from None
    if value < 0:
        raise CFError(ErrorKind.INVALID_QUERY, name=name, detail="must be >= 0")
    return value


async def handle_create(request: web.Request, route: Route, state: ServerState, request_id: str
                        ) -> web.StreamResponse:
    raw = await read_body(request)
    body = parse_json(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise _bad("Type mismatch of '/', 'array' not in 'object'")
    model_name = _string(body, "model", required=True)
    name = _string(body, "name", required=True)
    description = _string(body, "description", required=False)
    public = body.get("public", False)
    if not isinstance(public, bool):
        raise _bad(f"Type mismatch of '/public', '{type(public).__name__}' not in 'boolean'")
    assert model_name is not None and name is not None
    if not name.strip():
        raise _bad("name must not be empty")
    if name.startswith(PUBLIC_PREFIX):
        raise _bad(f"the {PUBLIC_PREFIX} prefix is reserved for Cloudflare's public adapters")
    model = state.catalog.get(model_name)
    if model is None:
        raise CFError(ErrorKind.NO_SUCH_MODEL, model=model_name)
    if not model.flag("lora"):
        raise CFError(ErrorKind.LORA_UNSUPPORTED, model=model_name)
    store = finetune_store(state)
    if store.count(route.account_id) >= MAX_FINETUNES:
        raise _bad(f"an account can hold at most {MAX_FINETUNES} finetunes")
    try:
        finetune = store.create(route.account_id, model=model_name, name=name, description=description,
                                public=public)
    except NameTaken:
        raise _bad(f"a finetune named {name!r} already exists on this account") from None
    return json_response(envelope(finetune.model_dump()))


async def handle_assets(request: web.Request, route: Route, state: ServerState, request_id: str
                        ) -> web.StreamResponse:
    store = finetune_store(state)
    assert route.resource is not None
    finetune = store.find(route.account_id, route.resource)
    if finetune is None:
        raise CFError(ErrorKind.FINETUNE_NOT_FOUND, finetune=route.resource, request_id=request_id)
    if not (request.content_type or "").startswith("multipart/"):
        raise _bad("finetune-assets takes a multipart/form-data body with `file` and `file_name`")
    folder = store.asset_dir(route.account_id, finetune.id)
    folder.mkdir(parents=True, exist_ok=True)
    upload, file_name = await _read_upload(request, folder)
    try:
        if upload is None:
            raise _bad("required properties at '/' are 'file'")
        if file_name is None:
            raise _bad("required properties at '/' are 'file_name'")
        try:
            assets.check_file_name(file_name)
            if store.has_asset(route.account_id, finetune.id, file_name):
                # "you can't edit a fine tune's asset files after you upload it" (loras page).
                raise assets.AssetError(
                    f"{file_name} was already uploaded; create a new finetune to change it")
            if file_name == assets.CONFIG:
                assets.check_config(upload.read_bytes())
            else:
                assets.check_safetensors(upload)
        except assets.AssetError as exc:
            raise _bad(str(exc)) from None
        os.replace(upload, folder / file_name)
        upload = None
    finally:
        if upload is not None:
            upload.unlink(missing_ok=True)
    store.touch(route.account_id, finetune.id)
    # The SDK reads this body as `{success: bool}` (asset_create_response.py): the envelope's own flag.
    return json_response(envelope({"success": True}))


async def _read_upload(request: web.Request, folder: Path) -> tuple[Path | None, str | None]:
    """Stream the `file` part to a temporary file (refusing it past the size limit) and read `file_name`."""
    upload: Path | None = None
    file_name: str | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file_name":
                file_name = (await part.read(decode=True)).decode("utf-8", "replace").strip()
            elif part.name == "file" and upload is None:
                upload = await _spool(part, folder)
            else:
                await part.release()
    except (ValueError, HttpProcessingError, RequestPayloadError) as exc:  # the multipart parser, the body
        if upload is not None:
            upload.unlink(missing_ok=True)
        if isinstance(exc, RequestPayloadError):  # not its Content-Encoding, or broken chunked framing
            raise body_refused(request) from None
        raise _bad(f"malformed multipart body ({exc})") from None
    return upload, file_name


async def _spool(part: BodyPartReader, folder: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size >= assets.MAX_ASSET_BYTES:
                    raise CFError(ErrorKind.TOO_LARGE)
                fh.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path

