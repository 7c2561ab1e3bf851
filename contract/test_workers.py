"""The seed guide's three workers, run in workerd via Miniflare, driven by the guide's own kinds of client."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from contract import checks
from contract.targets import FIXTURES, RECORDED_CASSETTE, LocalServer, Target

HERE = Path(__file__).resolve().parent / "workers"
API_HOST = "api.cloudflare.com"
IMAGE_HOST = "img.contract.test"
PASSWORD = "contract-password"
LANGS = [
    "en",
    "zh",
    "fr",
    "de",
    "es",
    "it",
    "ja",
    "ko",
    "pt",
    "ru",
    "nl",
    "sv",
    "no",
    "da",
    "fi",
    "pl",
    "tr",
    "ar",
    "he",
    "id",
    "th",
    "vi",
    "hi",
    "ms",
    "el",
    "cs",
    "sk",
    "ro",
    "hu",
    "bg",
    "hr",
    "sr",
    "uk",
]
WHISPERS = ["@cf/openai/whisper", "@cf/openai/whisper-sherpa", "@cf/openai/whisper-tiny-en"]
IMAGE_MODELS = [
    "@cf/bytedance/stable-diffusion-xl-lightning",
    "@cf/lykon/dreamshaper-8-lcm",
    "@cf/runwayml/stable-diffusion-v1-5-img2img",
    "@cf/runwayml/stable-diffusion-v1-5-inpainting",
    "@cf/stabilityai/stable-diffusion-xl-base-1.0",
]
# The notebook capture in fixtures/real/run-classify-translate-notebook.json (real m2m100 output).
NOTEBOOK_TEXT = "Artificial intelligence is pretty impressive these days. What do you think?"
NOTEBOOK_ES = "La inteligencia artificial es bastante impresionante en estos días. ¿Qué piensas?"


def node_ready() -> str | None:
    """None when node + miniflare are usable; otherwise the one-line reason the worker tests skip."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node/npm not found: the worker tests (workerd via miniflare) are skipped"
    if not (HERE / "node_modules" / "miniflare").is_dir():
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return f"npm ci failed in contract/workers ({tail[0]}): the worker tests are skipped"
    return None


class ImageHost(BaseHTTPRequestHandler):
    """A telegra.ph-style stand-in: POST /upload (multipart `file`) -> [{"src": "/file/<sha>.png"}]."""

    store: ClassVar[dict[str, tuple[bytes, str]]] = {}

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        match = re.search(rb"\r\n\r\n(.*)\r\n--", data, re.S)
        ctype = re.search(rb"Content-Type: ([^\r\n]+)", data)
        if self.path != "/upload" or match is None:
            self.send_error(400)
            return
        body = match.group(1)
        name = f"/file/{sha256(body).hexdigest()[:16]}.png"
        self.store[name] = (body, ctype.group(1).decode() if ctype else "application/octet-stream")
        self._reply(200, json.dumps([{"src": name}]).encode(), "application/json")

    def do_GET(self) -> None:
        if self.path not in self.store:
            self.send_error(404)
            return
        body, ctype = self.store[self.path]
        self._reply(200, body, ctype)

    def _reply(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Workers:
    image: str
    transcribe: str
    translate: str
    translate_bad_token: str
    translate_live: str  # on replay: the translate worker pointed at fixtures/recorded (for live checks)
    token: str
    image_ok: bool  # False on replay when no recording holds an image call


def start_workers(
    routes: dict[str, str], account: str, token: str, hosts: dict[str, str]
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    def api(name: str) -> dict[str, str]:
        host = hosts.get(name)
        return {"API_HOST": f"http://{host}"} if host else {}  # default: https://api.cloudflare.com

    config = {
        "routes": routes,
        "workers": {
            "image": {
                "script": "image.js",
                "bindings": {"ACCOUNT_ID": account, "IMAGE_HOST": f"http://{IMAGE_HOST}", **api("image")},
            },
            "transcribe": {
                "script": "transcribe.js",
                "bindings": {"ACCOUNT_ID": account, **api("transcribe")},
            },
            "translate": {
                "script": "translate.js",
                "bindings": {
                    "ACCOUNT_ID": account,
                    "API_TOKEN": token,
                    "PASSWORD": PASSWORD,
                    **api("translate"),
                },
            },
            "translate_live": {
                "script": "translate.js",
                "bindings": {"ACCOUNT_ID": account, "API_TOKEN": token, "PASSWORD": PASSWORD, **api("live")},
            },
            "translate_bad_token": {
                "script": "translate.js",
                "bindings": {
                    "ACCOUNT_ID": account,
                    "API_TOKEN": "contract-wrong-token",
                    "PASSWORD": PASSWORD,
                    **api("translate"),
                },
            },
        },
    }
    proc = subprocess.Popen(
        ["node", str(HERE / "run.mjs"), json.dumps(config)],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"run.mjs did not start: {err[-2000:]}")
    return proc, json.loads(line)


@pytest.fixture(scope="module")
def workers(
    request: pytest.FixtureRequest, target_name: str, cassette_server: Callable[[str], LocalServer]
) -> Iterator[Workers]:
    reason = node_ready()
    if reason is not None:
        pytest.skip(reason)
    host = ThreadingHTTPServer(("127.0.0.1", 0), ImageHost)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    routes = {IMAGE_HOST: f"http://127.0.0.1:{host.server_address[1]}"}
    hosts: dict[str, str] = {}
    image_ok = True
    if target_name == "replay":
        # Each worker's API host points at the replay server of the capture that holds its call.
        from contract.targets import LOCAL_ACCOUNT, LOCAL_TOKEN

        account, token = LOCAL_ACCOUNT, LOCAL_TOKEN
        for name, cassette in (
            ("transcribe", "real/run-whisper-rest-envelope"),
            ("translate", "real/run-classify-translate-notebook"),
        ):
            hosts[name] = f"{name}.api.contract.test"
            routes[hosts[name]] = cassette_server(cassette).base
        image_ok = (FIXTURES / f"{RECORDED_CASSETTE}.json").is_file()
        if image_ok:
            hosts["image"] = hosts["live"] = "recorded.api.contract.test"
            routes[hosts["image"]] = cassette_server(RECORDED_CASSETTE).base
    else:
        tgt: Target = request.getfixturevalue("target")
        account, token = tgt.account, tgt.token
        routes[API_HOST] = tgt.base  # the emulator, the record-mode emulator, or the real API itself
    proc, urls = start_workers(routes, account, token, hosts)
    yield Workers(
        urls["image"],
        urls["transcribe"],
        urls["translate"],
        urls["translate_bad_token"],
        urls["translate_live"],
        token,
        image_ok,
    )
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    host.shutdown()


def cors(response: httpx.Response) -> None:
    assert response.status_code == 204, checks.describe(response)
    assert response.headers.get("access-control-allow-origin") == "*"
    assert "POST" in response.headers.get("access-control-allow-methods", "")


# --- image worker -----------------------------------------------------------------------------------------


def need_image(w: Workers) -> None:
    if not w.image_ok:
        pytest.skip(
            "replay: no recording of an SDXL image call in fixtures/ (real captures hold none; "
            "make one with --target real --record)"
        )


@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_image_worker_openai_stream(
    workers: Workers, http: httpx.Client, model: str, target_name: str
) -> None:
    need_image(workers)
    if target_name == "replay" and model != IMAGE_MODELS[0]:
        pytest.skip("replay: only the first image model's call is part of the recording")
    import openai

    client = openai.OpenAI(
        api_key=workers.token,
        base_url=f"{workers.image}/v1",
        max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=120),
    )
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "a red bicycle leaning on a wall"}],
            stream=True,
        )
        chunks = list(stream)
    except openai.InternalServerError as exc:
        # The worker sends only a prompt. Models whose schema describes an input image (img2img, inpainting)
        # may refuse that with 5006; that refusal must name the missing input. Nothing else may fail.
        assert model.endswith(("-img2img", "-inpainting")), exc
        detail = json.loads(exc.response.json()["error"]["detail"])
        assert detail["errors"][0]["code"] == 5006 and "image" in detail["errors"][0]["message"], detail
        return
    assert len(chunks) == 1, chunks  # ONE server-sent event
    chunk = chunks[0]
    assert chunk.object == "chat.completion.chunk"
    assert re.fullmatch(r"imggen-\d+", chunk.id) and chunk.id == f"imggen-{chunk.created}"
    assert chunk.model == model
    assert chunk.choices[0].finish_reason == "stop" and chunk.choices[0].index == 0
    content = chunk.choices[0].delta.content or ""
    match = re.fullmatch(r"!\[\]\((http://[^)]+/file/[^)]+)\)", content)
    assert match, content
    image = http.get(match.group(1))  # fetched through the worker's /file/ proxy
    assert image.status_code == 200
    checks.png(image.content)


def test_image_worker_sse_wire_format(workers: Workers, http: httpx.Client) -> None:
    need_image(workers)
    r = http.post(
        f"{workers.image}/v1/chat/completions",
        headers={"Authorization": f"Bearer {workers.token}"},
        json={
            "model": IMAGE_MODELS[0],
            "messages": [{"role": "user", "content": "a red bicycle leaning on a wall"}],
        },
    )
    assert r.status_code == 200 and checks.media_type(r) == "text/event-stream"
    events = checks.sse_events(r.text)
    assert len(events) == 1
    assert list(json.loads(events[0])) == ["id", "object", "created", "model", "choices"]


def test_image_worker_edges(workers: Workers, http: httpx.Client) -> None:
    cors(http.options(f"{workers.image}/v1/chat/completions"))
    no_auth = http.post(
        f"{workers.image}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert no_auth.status_code == 401
    bad = http.post(
        f"{workers.image}/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
    )
    assert bad.status_code == 400


# --- transcription worker ---------------------------------------------------------------------------------


def transcribe(http: httpx.Client, w: Workers, model: str | None, audio: bytes | None) -> httpx.Response:
    files: dict[str, Any] = {}
    data = {"model": model} if model else {}
    if audio is not None:
        files["file"] = ("tone.wav", audio, "audio/wav")
    return http.post(
        f"{w.transcribe}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {w.token}"},
        data=data,
        files=files or {"x": ("x", b"", "text/plain")},
    )


@pytest.mark.parametrize("model", WHISPERS)
def test_transcription_worker(workers: Workers, http: httpx.Client, model: str, target_name: str) -> None:
    if target_name == "replay" and model != WHISPERS[0]:
        pytest.skip("replay: the real whisper capture is for @cf/openai/whisper only")
    r = transcribe(http, workers, model, (FIXTURES / "media" / "tone.wav").read_bytes())
    assert r.status_code == 200, checks.describe(r)
    body = r.json()
    assert list(body) == ["text"] and isinstance(body["text"], str)
    if target_name == "replay":
        assert body["text"].startswith("Hello there, I'm making a recording for a Jupiter notebook.")


def test_transcription_worker_edges(workers: Workers, http: httpx.Client) -> None:
    wav = (FIXTURES / "media" / "tone.wav").read_bytes()
    assert transcribe(http, workers, None, wav).status_code == 400  # no model
    assert transcribe(http, workers, WHISPERS[0], None).status_code == 400  # no file
    assert http.get(f"{workers.transcribe}/").status_code == 404
    assert http.post(f"{workers.transcribe}/v1/other").status_code == 404


# --- DeepLX translation worker ----------------------------------------------------------------------------


def deeplx(
    http: httpx.Client, url: str, body: Any, password: str = PASSWORD, path: str = "/translate"
) -> httpx.Response:
    return http.post(f"{url}{path}", params={"password": password}, json=body)


def test_translate_worker_real_text(workers: Workers, http: httpx.Client, target_name: str) -> None:
    r = deeplx(
        http, workers.translate, {"text": NOTEBOOK_TEXT, "source_lang": "ENGLISH", "target_lang": "SPANISH"}
    )
    assert r.status_code == 200, checks.describe(r)
    body = r.json()
    assert list(body) == ["alternatives", "code", "data", "id", "source_lang", "target_lang"]
    assert body["alternatives"] == [] and body["code"] == 200
    assert isinstance(body["data"], str) and body["data"]
    assert isinstance(body["id"], int)
    assert (body["source_lang"], body["target_lang"]) == ("ENGLISH", "SPANISH")
    if target_name == "replay":
        assert body["data"] == NOTEBOOK_ES


@pytest.mark.live
def test_translate_worker_all_guide_languages(workers: Workers, http: httpx.Client) -> None:
    for lang in LANGS:
        source = "es" if lang == "en" else "EN"
        r = deeplx(
            http,
            workers.translate_live,
            {"text": "Good morning", "source_lang": source, "target_lang": lang.upper()},
        )
        assert r.status_code == 200, (lang, checks.describe(r))
        assert isinstance(r.json()["data"], str)


def test_translate_worker_edges(workers: Workers, http: httpx.Client) -> None:
    ok = {"text": "hi", "source_lang": "en", "target_lang": "fr"}
    assert deeplx(http, workers.translate, ok, password="wrong").status_code == 401
    assert deeplx(http, workers.translate, ok, path="/other").status_code == 404
    assert deeplx(http, workers.translate, {"text": "hi", "target_lang": "fr"}).status_code == 400
    cors(http.options(f"{workers.translate}/translate"))
    failed = deeplx(http, workers.translate_bad_token, ok)  # the API answers 10000 to the wrong token
    assert failed.status_code == 500 and failed.json() == {"error": "Translation failed"}


def test_workers_need_no_edit_beyond_api_host() -> None:
    """The scripts carry no emulator knowledge: the only host they know is the real one (overridable)."""
    for name in ("image.js", "transcribe.js", "translate.js"):
        source = (HERE / name).read_text()
        assert "https://api.cloudflare.com" in source
        assert "127.0.0.1" not in source and "localhost" not in source and "emulator" not in source
    assert os.path.isfile(HERE / "package-lock.json")
