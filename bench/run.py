"""One-command benchmark: the emulator against a bare aiohttp baseline, with the targets of issue #10.

    python bench/run.py                      # full run (~4 min on 2 cores): table + bench/results/*.json
    python bench/run.py --duration 0.3 --rounds 1 --scenarios text --concurrency 1   # a smoke run

Servers run as subprocesses pinned to core 0, the load generator (wrk, else bench/loadgen.py) to core 1;
`--no-pin` turns pinning off. Every figure is the median of `--rounds` rounds; each load point is
measured right after a baseline point at the same concurrency, and its ratio is taken against that one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from baseline import EMBEDDINGS_FLOOR_PATH, TEXT_FLOOR_PATH
from drivers import VARY_MARKER, Load, drive, percentile, pick, pinned, process_cpu_s

from emulator.settings import DEFAULT_ACCOUNT

ROOT = Path(__file__).resolve().parent
ACCOUNT = DEFAULT_ACCOUNT
AI = f"/client/v4/accounts/{ACCOUNT}/ai"
HEADERS = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
TEXT_MODEL = "@cf/meta/llama-3-8b-instruct"
SERVER_CPU, LOAD_CPU = 0, 1
REPLAY_SIZE = 10_000
# The concurrency of every load point but the text scenarios', which run at each `--concurrency`.
MAIN_CONCURRENCY = 16
# Numbers that make varied requests distinct start this far apart from one load point to the next
# (one point sends far fewer requests), and stay below the 9,999,999,999 a model's `seed` allows.
VARY_SPAN = 10_000_000
VARY_BASES = itertools.count(VARY_SPAN, VARY_SPAN)


def body(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def run_request(model: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"method": "POST", "path": f"{AI}/run/{model}", "body": body(inputs)}


def chat_request(messages: list[dict[str, str]]) -> dict[str, Any]:
    return {"method": "POST", "path": f"{AI}/v1/chat/completions",
            "body": body({"model": TEXT_MODEL, "messages": messages})}


def wav(seconds: float, variant: int = 0) -> bytes:
    """A 16 kHz mono 16-bit WAV of noise-like samples that differ with `variant`."""
    frames = int(16_000 * seconds)
    period = bytes((variant * 7 + i * 13 + (i * i) % 251) & 0xFF for i in range(4096))
    samples = (period * (frames * 2 // len(period) + 1))[: frames * 2]
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(samples)
    return out.getvalue()


# Prompts of the varied text scenarios: several lengths, each made unique per request by VARY_MARKER.
PROMPTS = ("Where did the phrase Hello World come from?", "Explain recursion to a five year old.",
           "Write a haiku about lighthouses at dusk.", "What is the capital of Australia, and why there?",
           "Summarise the plot of Moby Dick in three sentences, then list its main characters and what "
           "each of them wants.", "Translate 'good morning' into French.",
           "Give me three ideas for a birthday party for a ten year old who loves dinosaurs.",
           "Is a tomato a fruit or a vegetable?")
LANGUAGES = ("fr", "de", "es", "ja", "ru", "zh", "hi", "ar")
TEN_SECONDS_WAV = wav(10.0)


def varied_text() -> list[dict[str, Any]]:
    return [run_request(TEXT_MODEL, {"prompt": f"{p} (question {VARY_MARKER})"}) for p in PROMPTS]


def varied_text_floor() -> list[dict[str, Any]]:
    """The calls of `varied_text`, answered by the baseline's floor handler: what a bare aiohttp server
    that only parses, draws sentences from a table and serialises the envelope reaches."""
    return [{**r, "path": TEXT_FLOOR_PATH} for r in varied_text()]


def varied_chat() -> list[dict[str, Any]]:
    return [chat_request([{"role": "system", "content": "You are a helpful assistant."},
                          {"role": "user", "content": f"{p} (question {VARY_MARKER})"}]) for p in PROMPTS]


def varied_embeddings() -> list[dict[str, Any]]:
    return [run_request("@cf/baai/bge-base-en-v1.5",
                        {"text": [f"benchmark sentence {i} of batch {VARY_MARKER} about lighthouses"
                                  for i in range(32)]})]


def varied_embeddings_floor() -> list[dict[str, Any]]:
    """The 32-text calls of `varied_embeddings`, answered by the baseline's floor handler (768 dimensions,
    as bge-base): what a bare aiohttp server that only parses, draws and serialises the vectors reaches."""
    return [{**r, "path": f"{EMBEDDINGS_FLOOR_PATH}?dims=768"} for r in varied_embeddings()]


def varied_png() -> list[dict[str, Any]]:
    return [run_request("@cf/stabilityai/stable-diffusion-xl-base-1.0",
                        {"prompt": f"a lighthouse at dusk, study {VARY_MARKER}", "width": 1024,
                         "height": 1024})]


def varied_whisper() -> list[dict[str, Any]]:
    # wrk's request file holds text lines, so the 10-second WAV goes as whisper-large-v3-turbo's base64
    # `audio`; `initial_prompt` makes each call distinct (another seed, another transcript).
    audio = base64.b64encode(TEN_SECONDS_WAV).decode()
    return [run_request("@cf/openai/whisper-large-v3-turbo",
                        {"audio": audio, "initial_prompt": f"Recording {VARY_MARKER}."})]


def varied_translation() -> list[dict[str, Any]]:
    return [run_request("@cf/meta/m2m100-1.2b", {"text": f"{p} (sentence {VARY_MARKER})", "source_lang": "en",
                                                 "target_lang": LANGUAGES[i % len(LANGUAGES)]})
            for i, p in enumerate(PROMPTS)]


def varied_stream() -> list[dict[str, Any]]:
    return [run_request(TEXT_MODEL, {"prompt": f"{p} (question {VARY_MARKER})", "stream": True})
            for p in PROMPTS]


# The env.AI binding as Miniflare's remote proxy sends `env.AI.run(model, inputs)` (emulator/server/
# binding.py): to the connection string's path, the binding's own URL and headers wrapped in MF-* headers.
BINDING_HEADERS = {"MF-Binding": "AI", "MF-URL": "https://workers-binding.ai/run?version=3",
                   "MF-Header-content-type": "application/json", "MF-Header-cf-consn-sdk-version": "2.0.0",
                   "MF-Header-cf-consn-model-id": TEXT_MODEL}


def varied_binding() -> list[dict[str, Any]]:
    return [{"method": "POST", "path": "/", "headers": BINDING_HEADERS,
             "body": body({"inputs": {"prompt": f"{p} (question {VARY_MARKER})"}, "options": {}})}
            for p in PROMPTS]


def replay_prompt(i: int) -> str:
    return f"replayed prompt {i}"


def varied_replay() -> list[dict[str, Any]]:
    # Each of the 10,000 recorded prompts, with a `seed` that differs on every request: the replay server
    # ignores `seed` when matching (--ignore-field seed), as a suite whose calls carry a per-run field does.
    return [{"method": "POST", "path": f"{AI}/run/{TEXT_MODEL}",
             "body": body({"prompt": replay_prompt(i)})[:-1] + f',"seed":{VARY_MARKER}}}'}
            for i in range(REPLAY_SIZE)]


TEXT = run_request(TEXT_MODEL, {"prompt": "Where did the phrase Hello World come from?"})
REPEATED: dict[str, list[dict[str, Any]]] = {
    "text": [TEXT],
    "chat": [chat_request([{"role": "user", "content": "Hello there"}])],
    "embeddings": [run_request("@cf/baai/bge-base-en-v1.5",
                               {"text": [f"benchmark sentence {i} about lighthouses" for i in range(32)]})],
    "png": [run_request("@cf/stabilityai/stable-diffusion-xl-base-1.0",
                        {"prompt": "a lighthouse at dusk", "width": 1024, "height": 1024})],
    "replay": [run_request(TEXT_MODEL, {"prompt": replay_prompt(i)}) for i in range(REPLAY_SIZE)],
}


@dataclass(frozen=True)
class Scenario:
    """One load point kind: the requests wrk rotates through, on the mock or the replay server."""

    name: str  # as given to --scenarios
    label: str
    requests: Callable[[], list[dict[str, Any]]]
    varied: bool
    server: str = "mock"

    @property
    def every_concurrency(self) -> bool:
        return self.label.startswith("text")


VARIED = (
    Scenario("text", "text (run/)", varied_text, True),
    # The least any server can do for those calls (bench/baseline.py `text_floor`), beside them.
    Scenario("text-floor", "floor: text (run/)", varied_text_floor, True, "baseline"),
    Scenario("chat", "chat (v1/chat/completions)", varied_chat, True),
    Scenario("embeddings", "embeddings (32 texts)", varied_embeddings, True),
    # The least any server can do for those calls (bench/baseline.py `embeddings_floor`), beside them.
    Scenario("embeddings-floor", "floor: embeddings (32 texts)", varied_embeddings_floor, True, "baseline"),
    Scenario("png", "png (1024x1024)", varied_png, True),
    Scenario("whisper", "whisper-turbo (10 s WAV)", varied_whisper, True),
    Scenario("translation", "translation (m2m100)", varied_translation, True),
    Scenario("stream", "streamed text (run/ SSE)", varied_stream, True),
    Scenario("binding", "binding text (env.AI.run)", varied_binding, True),
    Scenario("replay", "replay (10,000 interactions)", varied_replay, True, "replay"),
)
REPEATED_SCENARIOS = tuple(
    Scenario(f"{s.name}-repeated", s.label, lambda name=s.name: REPEATED[name], False, s.server)
    for s in VARIED if s.name in REPEATED
)
LOAD_SCENARIOS = {s.name: s for s in (*VARIED, *REPEATED_SCENARIOS)}
SPECIAL_SCENARIOS = ("stream_fanout", "passthrough", "png_latency", "whisper_latency", "embeddings_latency",
                     "cold_start", "memory", "workers")
ALL_SCENARIOS = ("baseline", *LOAD_SCENARIOS, *SPECIAL_SCENARIOS)


# Servers --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, data: bytes | None = None, timeout: float = 10.0,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, data=data, method=method, headers={**HEADERS, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def server_pid(self) -> int:
        """The server's own pid: `taskset` execs it, so it is the child's pid either way."""
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            try:
                http("GET", self.base + "/__emulator__/health", timeout=1)
                return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_baseline(kind: str, cpu: int | None) -> Server:
    port = free_port()
    cmd = pinned([sys.executable, str(ROOT / "baseline.py"), kind, "--port", str(port)], cpu)
    server = Server(kind, port, subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    server.wait_ready()
    return server


def emulator_cmd(port: int, data_dir: Path, *args: str) -> list[str]:
    # The paid plan, so a long run never reaches the free daily wall (4006) mid-measurement.
    return [sys.executable, "-m", "emulator", "serve", "--port", str(port), "--data-dir", str(data_dir),
            "--plan", "paid", *args]


def emulator_event_loop() -> str:
    """The loop `serve` picks here: WORKERS_AI_EMULATOR_EVENT_LOOP=asyncio measures it on asyncio's own."""
    from emulator.launch.eventloop import chosen
    from emulator.settings import EventLoop

    return chosen(EventLoop(os.environ.get("WORKERS_AI_EMULATOR_EVENT_LOOP", "auto"))).value


def start_emulator(name: str, data_dir: Path, cpu: int | None, *args: str) -> Server:
    port = free_port()
    cmd = pinned(emulator_cmd(port, data_dir, *args), cpu)
    server = Server(name, port, subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    server.wait_ready()
    return server


def warm_up(server: Server, requests: list[dict[str, Any]]) -> None:
    """Fill caches (mock outcomes, replay index, lazily compiled validators) before measuring. Varied
    bodies get numbers below any load point's, so no measured request was answered here."""
    for i, spec in enumerate(requests[:20]):
        data = spec.get("body", "").replace(VARY_MARKER, str(1 + i)).encode()
        # The first call may load a cassette index (10,000 interactions: seconds on a busy machine).
        status, payload, _ = http(spec["method"], server.base + spec["path"], data, timeout=120,
                                  headers=spec.get("headers"))
        if status >= 400:
            raise RuntimeError(f"{server.name}: {spec['path']} answered {status}: {payload[:300]!r}")


# Replay cassette ------------------------------------------------------------------------------------

def write_replay_cassette(directory: Path, name: str) -> None:
    """A cassette of REPLAY_SIZE interactions built with the cassettes API, as recording would store it."""
    from emulator.cassettes import Cassette, CassetteStore, Interaction, RecordedRequest, RecordedResponse

    interactions = []
    for i, spec in enumerate(REPEATED["replay"]):
        request = RecordedRequest.build("POST", spec["path"], {}, HEADERS.items(), spec["body"].encode())
        answer = body({"result": {"response": f"Recorded answer {i}."}, "success": True, "errors": [],
                       "messages": []})
        response = RecordedResponse.build(200, {"content-type": "application/json", "cf-ai-neurons": "0.42"},
                                          answer.encode())
        interactions.append(Interaction(request=request, response=response, neurons=0.42))
    CassetteStore(directory).save(Cassette(name=name, source="recorded", interactions=interactions))


# Special measurements -------------------------------------------------------------------------------

async def stream_fanout(base: str, streams: int = 64, max_tokens: int = 300) -> dict[str, Any]:
    """`streams` concurrent SSE answers (max_tokens 300 gives ~100 events each): when each saw its first
    event and its last, and how many events."""
    import aiohttp

    inputs = {"prompt": "Tell me a long story", "stream": True, "max_tokens": max_tokens}
    spec = run_request(TEXT_MODEL, inputs)
    started = time.perf_counter()

    async def one(session: aiohttp.ClientSession) -> tuple[float, float, int]:
        first = 0.0
        events = 0
        async with session.post(base + spec["path"], data=spec["body"], headers=HEADERS) as resp:
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                count = buffer.count(b"\n\n")
                if count:
                    if not events:
                        first = time.perf_counter() - started
                    events += count
                    buffer = buffer[buffer.rfind(b"\n\n") + 2:]
        return first, time.perf_counter() - started, events

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(one(session) for _ in range(streams)))
    firsts, lasts, counts = zip(*results, strict=True)
    return {"streams": streams, "events_min": min(counts), "events_max": max(counts),
            "first_event_max_ms": max(firsts) * 1000, "first_done_ms": min(lasts) * 1000,
            "total_ms": max(lasts) * 1000}


def sequential_latency(base: str, make: Callable[[int], dict[str, Any]], n: int, salt: str) -> dict[str, Any]:
    """p50/p99 of `n` sequential calls with distinct inputs (so nothing comes from the outcome cache).
    A spec's body is text (JSON) or bytes sent with its own `content_type`."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=30)
    latencies = []
    for i in range(n):
        spec = make(hash((salt, i)) & 0xFFFFFFFF)
        data = spec["body"] if isinstance(spec["body"], bytes) else spec["body"].encode()
        headers = {**HEADERS, "Content-Type": spec.get("content_type", HEADERS["Content-Type"])}
        t0 = time.perf_counter()
        conn.request(spec["method"], spec["path"], data, headers)
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - t0)
        if resp.status >= 400:
            raise RuntimeError(f"{spec['path']} answered {resp.status}")
    conn.close()
    latencies.sort()
    return {"n": n, "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000}


def png_request(i: int) -> dict[str, Any]:
    return run_request("@cf/stabilityai/stable-diffusion-xl-base-1.0",
                       {"prompt": f"lighthouse number {i}", "width": 1024, "height": 1024})


def whisper_request(i: int) -> dict[str, Any]:
    """A distinct 10-second WAV as the raw body of a whisper call (how the binding and curl send it)."""
    return {"method": "POST", "path": f"{AI}/run/@cf/openai/whisper", "body": wav(10.0, i),
            "content_type": "audio/wav"}


def embeddings_request(i: int) -> dict[str, Any]:
    return run_request("@cf/baai/bge-large-en-v1.5", {"text": [f"text {j} of batch {i}" for j in range(100)]})


def embeddings_floor_request(i: int) -> dict[str, Any]:
    """The same call to the baseline's floor handler (bench/baseline.py `embeddings_floor`)."""
    return {**embeddings_request(i), "path": EMBEDDINGS_FLOOR_PATH}


def cold_start(data_dir: Path, cpu: int | None) -> dict[str, Any]:
    """Seconds from spawning `serve` to the first model answer, and its resident memory after it has
    read every catalog page, every model schema and compiled every model's input validator."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(pinned(emulator_cmd(port, data_dir), cpu), stdout=subprocess.DEVNULL)
    server = Server("cold", port, proc)
    try:
        url = server.base + TEXT["path"]
        while True:
            if proc.poll() is not None:
                raise RuntimeError("serve exited during cold start")
            try:
                status, _, _ = http("POST", url, TEXT["body"].encode(), timeout=2)
                if status == 200:
                    break
            except OSError:
                time.sleep(0.005)
        first_answer = time.perf_counter() - started
        models = load_whole_catalog(server.base)
        rss = rss_mb(proc.pid)
    finally:
        server.stop()
    return {"first_answer_s": first_answer, "rss_mb": rss, "models": models}


def load_whole_catalog(base: str) -> int:
    names: list[str] = []
    page = 1
    while True:
        _, payload, _ = http("GET", f"{base}{AI}/models/search?per_page=100&page={page}")
        result = json.loads(payload).get("result") or []
        names += [m["name"] for m in result]
        if len(result) < 100:
            break
        page += 1
    for name in names:
        http("GET", f"{base}{AI}/models/schema?model={name}")
        http("POST", f"{base}{AI}/run/{name}", b"{}")
    return len(names)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# Rounds ---------------------------------------------------------------------------------------------

@dataclass
class Options:
    duration: float
    rounds: int
    scenarios: list[str]
    concurrency: list[int]
    tool: str
    pin: bool
    out: Path | None


@dataclass
class Results:
    load: dict[tuple[str, int], list[Load]] = field(default_factory=dict)
    # The baseline measured right before each scenario load point: ratios are taken pair by pair.
    paired: dict[tuple[str, int], list[Load]] = field(default_factory=dict)
    special: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def add_load(self, scenario: str, concurrency: int, load: Load, *, base: Load | None = None) -> None:
        self.load.setdefault((scenario, concurrency), []).append(load)
        if base is not None:
            self.paired.setdefault((scenario, concurrency), []).append(base)

    def add(self, scenario: str, value: dict[str, Any]) -> None:
        self.special.setdefault(scenario, []).append(value)


def cpu(options: Options, which: int) -> int | None:
    return which if options.pin and (os.cpu_count() or 1) >= 2 else None


def one_round(options: Options, results: Results, servers: dict[str, Server], work: Path, number: int
              ) -> None:
    server_cpu, load_cpu = cpu(options, SERVER_CPU), cpu(options, LOAD_CPU)
    wanted = options.scenarios
    baseline = servers.get("baseline")

    def measure(server: Server, requests: list[dict[str, Any]], concurrency: int) -> Load:
        pid = server.server_pid
        before = process_cpu_s(pid)
        load = drive(options.tool, server.port, requests, concurrency=concurrency, duration=options.duration,
                     cpu=load_cpu, vary_base=next(VARY_BASES))
        load.server_cpu_s = process_cpu_s(pid) - before
        return load

    scenarios = [s for s in LOAD_SCENARIOS.values() if s.name in wanted]
    if not scenarios and "baseline" in wanted and baseline is not None:
        for concurrency in options.concurrency:
            results.add_load("baseline", concurrency, measure(baseline, [TEXT], concurrency))
    for scenario in scenarios:
        server = servers.get(scenario.server)
        if server is None or baseline is None:
            continue
        requests = scenario.requests()
        for concurrency in concurrencies(options, scenario):
            # The baseline right before each point: this VM's speed drifts by tens of percent within
            # minutes, so a ratio is only meaningful between two measurements taken back to back.
            base = measure(baseline, [TEXT], concurrency)
            results.add_load("baseline", concurrency, base)
            results.add_load(scenario.name, concurrency, measure(server, requests, concurrency), base=base)
    mock = servers.get("mock")
    if "stream_fanout" in wanted and mock is not None:
        results.add("stream_fanout", asyncio.run(stream_fanout(mock.base)))
    if "png_latency" in wanted and mock is not None:
        results.add("png_latency", sequential_latency(mock.base, png_request, 30, f"png{number}"))
    if "whisper_latency" in wanted and mock is not None:
        results.add("whisper_latency", sequential_latency(mock.base, whisper_request, 100, f"wav{number}"))
    if "embeddings_latency" in wanted and mock is not None:
        measured = sequential_latency(mock.base, embeddings_request, 100, f"emb{number}")
        if baseline is not None:
            # Back to back with the emulator's, like every ratio here: the floor drifts with the VM too.
            floor = sequential_latency(baseline.base, embeddings_floor_request, 100, f"emb{number}")
            measured["floor_p50_ms"] = floor["p50_ms"]
            measured["vs_floor"] = measured["p50_ms"] / floor["p50_ms"]
        results.add("embeddings_latency", measured)
    if "passthrough" in wanted:
        results.add("passthrough", passthrough_overhead(options, servers, load_cpu))
    if "cold_start" in wanted or "memory" in wanted:
        results.add("cold_start", cold_start(Path(tempfile.mkdtemp(dir=work)), server_cpu))
    if "workers" in wanted:
        scaling = workers_scaling(options, work)
        if scaling is None:
            results.missing["workers"] = "serve --workers is not implemented"
        else:
            results.add("workers", scaling)


def concurrencies(options: Options, scenario: Scenario) -> list[int]:
    """Text runs at every --concurrency; the others at MAIN_CONCURRENCY when it is one of them."""
    if scenario.every_concurrency or MAIN_CONCURRENCY not in options.concurrency:
        return options.concurrency
    return [MAIN_CONCURRENCY]


def passthrough_overhead(options: Options, servers: dict[str, Server], load_cpu: int | None
                         ) -> dict[str, Any]:
    """Added p50 per call of passthrough and record (c=1) over calling the local upstream directly."""
    figures: dict[str, Any] = {}
    spec = [TEXT]
    direct = drive(options.tool, servers["upstream"].port, spec, concurrency=1, duration=options.duration,
                   cpu=load_cpu)
    figures["direct_p50_ms"] = direct.p50_ms
    for mode in ("passthrough", "record"):
        via = drive(options.tool, servers[mode].port, spec, concurrency=1, duration=min(options.duration, 1.0)
                    if mode == "record" else options.duration, cpu=load_cpu)
        figures[f"{mode}_p50_ms"] = via.p50_ms
        figures[f"{mode}_added_p50_ms"] = via.p50_ms - direct.p50_ms
        figures[f"{mode}_errors"] = via.errors
    return figures


def workers_scaling(options: Options, work: Path) -> dict[str, Any] | None:
    """Whole-machine throughput of `serve --workers 1` and `--workers 2`, unpinned, same load: repeated
    (cached) text calls, and text calls that are all different (uncached). After the 2-worker run the
    shared ledger must hold exactly the calls wrk saw answered (plus at most the ones in flight).

    The load generator shares the machine: `*_ceiling` is the scaling two workers could reach at
    most, the cores it left them in the 2-worker run (one worker keeps one core busy at 64
    connections)."""
    out: dict[str, Any] = {}
    for label, requests in (("cached", REPEATED["text"]), ("uncached", varied_text())):
        rps: dict[int, float] = {}
        for n in (1, 2):
            data_dir = Path(tempfile.mkdtemp(dir=work))
            load = run_workers(options, data_dir, n, requests)
            if load is None:
                return None
            rps[n] = load.rps
            if n == 2:
                charged = ledger_requests(data_dir)
                answered = load.requests + 1  # + the warm-up call
                out[f"{label}_ledger_exact"] = float(answered <= charged <= answered + 64)
                out[f"{label}_load_cores_2"] = load.load_cores
                out[f"{label}_ceiling"] = min(2.0, (os.cpu_count() or 1) - load.load_cores)
        out[f"{label}_rps_1"], out[f"{label}_rps_2"] = rps[1], rps[2]
        out[f"{label}_scaling"] = rps[2] / rps[1] if rps[1] else 0.0
    return out


def run_workers(options: Options, data_dir: Path, n: int, requests: list[dict[str, Any]]) -> Load | None:
    """The load `serve --workers n` answered under 64 connections, or None without --workers."""
    port = free_port()
    cmd = emulator_cmd(port, data_dir, "--workers", str(n))
    proc = subprocess.Popen(pinned(cmd, None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = Server(f"workers{n}", port, proc)
    try:
        try:
            server.wait_ready()
        except RuntimeError:
            stderr = proc.stderr.read() if proc.stderr else ""
            if "no such option" in stderr.lower():
                return None
            raise
        # The first worker answers health before the others listen; wrk's keep-alive connections
        # opened then would all stay on it. The banner comes once every worker listens.
        assert proc.stdout is not None
        for line in proc.stdout:
            if n == 1 or "workers (pids" in line:
                break
        warm_up(server, requests[:1])
        # Several connections per worker so SO_REUSEPORT spreads them; two load threads/processes.
        return drive(options.tool, port, requests, concurrency=64, duration=options.duration, cpu=None,
                     threads=2, vary_base=next(VARY_BASES))
    finally:
        server.stop()


def ledger_requests(data_dir: Path) -> int:
    """Calls in a stopped server's ledger (opening it applies any journal left behind)."""
    from emulator.accounting.ledger import Ledger

    with Ledger(data_dir / "ledger.sqlite3", plan="paid") as ledger:
        return sum(ledger.usage(day=d).requests for d in ledger.days())


# Report ---------------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(options: Options, results: Results) -> dict[str, Any]:
    rows = []
    order = ("baseline", *LOAD_SCENARIOS)
    for (scenario, concurrency), loads in sorted(results.load.items(),
                                                 key=lambda item: (order.index(item[0][0]), item[0][1])):
        base = results.paired.get((scenario, concurrency), loads if scenario == "baseline" else [])
        ratios = [a.rps / b.rps for a, b in zip(loads, base, strict=True) if b.rps]
        p99_ratios = [a.p99_ms / b.p99_ms for a, b in zip(loads, base, strict=True) if b.p99_ms]
        cpu_ratios = [b.cpu_us / a.cpu_us for a, b in zip(loads, base, strict=True) if a.cpu_us]
        kind = LOAD_SCENARIOS.get(scenario)
        rows.append({"scenario": scenario, "label": kind.label if kind else "bare aiohttp, fixed JSON",
                     "table": ("baseline" if kind is None or kind.server == "baseline"
                               else "varied" if kind.varied else "repeated"),
                     "concurrency": concurrency,
                     "rps": median([x.rps for x in loads]), "p50_ms": median([x.p50_ms for x in loads]),
                     "p99_ms": median([x.p99_ms for x in loads]), "ratio": median(ratios),
                     "p99_ratio": median(p99_ratios), "cpu_us": median([x.cpu_us for x in loads]),
                     "cpu_ratio": median(cpu_ratios),
                     "errors": sum(x.errors for x in loads), "rounds": [x.as_dict() for x in loads]})
    special = {name: {key: median([v[key] for v in values]) for key in values[0]
                      if isinstance(values[0][key], (int, float))}
               for name, values in results.special.items()}
    return {"tool": options.tool, "duration_s": options.duration, "rounds": options.rounds,
            "pinned": options.pin, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "event_loop": emulator_event_loop(), "rows": rows,
            "special": special, "special_rounds": results.special, "missing": results.missing,
            "targets": targets(rows, special, results.missing, options.scenarios)}


def targets(rows: list[dict[str, Any]], special: dict[str, dict[str, float]], missing: dict[str, str],
            wanted: list[str]) -> list[dict[str, Any]]:
    def row(scenario: str, concurrency: int = MAIN_CONCURRENCY) -> dict[str, Any] | None:
        return next((r for r in rows if r["scenario"] == scenario and r["concurrency"] == concurrency), None)

    out: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, higher_is_better: bool, unit: str) -> None:
        if value is None:
            out.append({"target": name, "value": None, "limit": limit, "unit": unit, "status": "MISSING"})
            return
        ok = value >= limit if higher_is_better else value <= limit
        out.append({"target": name, "value": value, "limit": limit, "unit": unit,
                    "op": ">=" if higher_is_better else "<=", "status": "PASS" if ok else "FAIL"})

    # Varied requests (issue #24): nothing answered from a cache.
    if r := row("text"):
        check("varied text (run/) vs baseline (c=16)", r["ratio"], 0.40, True, "x")
        check("varied text p99 / baseline p99 (c=16)", r["p99_ratio"], 3.0, False, "x")
    if r := row("chat"):
        check("varied chat vs baseline (c=16)", r["ratio"], 0.35, True, "x")
    if r := row("binding"):
        # The same answer as text run/ through the binding's framing: held to text run/'s target.
        check("varied binding env.AI.run text vs baseline (c=16)", r["ratio"], 0.40, True, "x")
    if r := row("embeddings"):
        check("varied embeddings of 32 texts vs baseline (c=16)", r["ratio"], 0.25, True, "x")
    if r := row("replay"):
        check("varied replay of 10,000 interactions vs baseline (c=16)", r["ratio"], 0.40, True, "x")
    if "png_latency" in wanted:
        p = special.get("png_latency")
        check("varied 1024x1024 PNG p50", p["p50_ms"] if p else None, 15.0, False, "ms")
    if "whisper_latency" in wanted:
        p = special.get("whisper_latency")
        check("varied whisper, 10 s WAV, p50", p["p50_ms"] if p else None, 5.0, False, "ms")
    if "embeddings_latency" in wanted:
        p = special.get("embeddings_latency")
        check("varied 100x1024 embeddings p50 / floor p50", p.get("vs_floor") if p else None, 1.3, False, "x")
    # One request repeated (issue #10's targets, answered by the rendered-answer cache).
    if r := row("text-repeated"):
        check("repeated text vs baseline (c=16)", r["ratio"], 0.50, True, "x")
    if r := row("replay-repeated"):
        check("repeated replay of 10,000 interactions vs baseline (c=16)", r["ratio"], 0.45, True, "x")
    if "passthrough" in wanted:
        p = special.get("passthrough")
        check("passthrough added p50 (c=1)", p["passthrough_added_p50_ms"] if p else None, 1.0, False, "ms")
    if "stream_fanout" in wanted and (p := special.get("stream_fanout")):
        # All 64 streams have their first event before any stream ends: none waits for another.
        ratio = p["first_event_max_ms"] / p["first_done_ms"]
        check("64 streams: last first-event / first stream done", ratio, 1.0, False, "x")
    if "cold_start" in wanted:
        p = special.get("cold_start")
        check("cold serve to first answer", p["first_answer_s"] if p else None, 1.5, False, "s")
    if "memory" in wanted:
        p = special.get("cold_start")
        check("resident memory after the whole catalog", p["rss_mb"] if p else None, 120.0, False, "MB")
    if "workers" in wanted:
        p = special.get("workers")
        check("throughput 2 workers / 1 worker (unpinned)", p["cached_scaling"] if p else None, 1.7, True,
              "x")
        check("ledger holds every answered call with 2 workers", p["uncached_ledger_exact"] if p else None,
              1.0, True, "")
    return out


TABLE_TITLES = {"varied": "Varied requests (each one different: nothing comes from a cache)",
                "repeated": "One request repeated (answered from the rendered-answer cache)",
                "baseline": "Baseline (every point measured right before a scenario point)"}


def render(summary: dict[str, Any]) -> str:
    load = summary.get("load_average") or ()
    lines = [f"load generator: {summary['tool']}, {summary['duration_s']:g} s per point, "
             f"median of {summary['rounds']} round(s), {'pinned' if summary['pinned'] else 'unpinned'}, "
             f"{summary['cpus']} cpus, load average at the end {' '.join(f'{x:.2f}' for x in load)}, "
             f"emulator on {summary.get('event_loop', 'asyncio')} (the baseline: aiohttp on asyncio's loop)"]
    for table in ("varied", "repeated", "baseline"):
        rows = [r for r in summary["rows"] if r["table"] == table]
        if not rows:
            continue
        lines += ["", TABLE_TITLES[table],
                  f"{'scenario':<30} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs base':>8} "
                  f"{'p99 vs base':>11} {'cpu µs/req':>10} {'cpu vs base':>11} {'errors':>6}"]
        for r in rows:
            lines.append(f"{r['label']:<30} {r['concurrency']:>4} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} "
                         f"{r['p99_ms']:>8.2f} {r['ratio']:>7.2f}x {r['p99_ratio']:>10.2f}x "
                         f"{r['cpu_us']:>10.1f} {r['cpu_ratio']:>10.2f}x {r['errors']:>6}")
    lines += ["", "vs base: the scenario's req/s / the bare aiohttp baseline's, measured right before it "
              "at the same concurrency (every row; the binding row, text answers through env.AI's "
              "framing, is held to text run/'s target, >= 0.40x).",
              "cpu vs base: the baseline's server CPU per request / the scenario's, back to back; it "
              "tracks `vs base` on an idle machine and stays put when other work slows both."]
    if summary["special"]:
        lines.append("")
    for name, values in summary["special"].items():
        shown = ", ".join(f"{k}={v:.3g}" for k, v in values.items())
        lines.append(f"{name}: {shown}")
    for name, why in summary["missing"].items():
        lines.append(f"{name}: MISSING ({why})")
    if summary["targets"]:
        lines += ["", f"{'target':<58} {'measured':>10} {'limit':>10}  result"]
        for t in summary["targets"]:
            value = "-" if t["value"] is None else f"{t['value']:.3g} {t['unit']}"
            limit = f"{t.get('op', '')} {t['limit']:g} {t['unit']}"
            lines.append(f"{t['target']:<58} {value:>10} {limit:>10}  {t['status']}")
    return "\n".join(lines)


# Main -----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per load point (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians (default 3)")
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                        help=f"comma-separated subset of: {', '.join(ALL_SCENARIOS)}")
    parser.add_argument("--concurrency", default="1,16,64",
                        help="connections per load point (default 1,16,64)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                        help="auto: wrk when installed, else the Python load generator")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin servers and load generator to cores")
    parser.add_argument("--out", type=Path, help="JSON results file (default bench/results/<time>.json)")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return Options(args.duration, max(1, args.rounds), scenarios,
                   [int(c) for c in args.concurrency.split(",")], pick(args.loadgen), not args.no_pin,
                   args.out)


def start_servers(options: Options, stack: ExitStack, work: Path) -> dict[str, Server]:
    server_cpu = cpu(options, SERVER_CPU)
    wanted = set(options.scenarios)
    loads = [s for s in LOAD_SCENARIOS.values() if s.name in wanted]
    servers: dict[str, Server] = {}

    def keep(name: str, server: Server) -> None:
        servers[name] = server
        stack.callback(server.stop)

    if wanted & {"baseline", "embeddings_latency"} or loads:
        keep("baseline", start_baseline("baseline", server_cpu))
    if wanted & {"stream_fanout", "png_latency", "whisper_latency", "embeddings_latency"} or any(
            s.server == "mock" for s in loads):
        keep("mock", start_emulator("mock", work / "mock", server_cpu))
    if any(s.server == "replay" for s in loads):
        cassettes = work / "cassettes"
        write_replay_cassette(cassettes, "bench")
        keep("replay", start_emulator("replay", work / "replay", server_cpu, "--mode", "replay",
                                      "--cassette", "bench", "--cassette-dir", str(cassettes),
                                      "--ignore-field", "seed"))
    for scenario in loads:
        warm_up(servers[scenario.server], scenario.requests())
    if "passthrough" in wanted:
        keep("upstream", start_baseline("upstream", server_cpu))
        upstream = servers["upstream"].base
        for mode in ("passthrough", "record"):
            keep(mode, start_emulator(mode, work / mode, server_cpu, "--mode", mode, "--upstream", upstream,
                                      "--cassette", "bench-record",
                                      "--cassette-dir", str(work / f"{mode}-tapes")))
            warm_up(servers[mode], [TEXT])
    return servers


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if options.pin and (os.cpu_count() or 1) >= 2:
        # The in-process measurements (streams, sequential latencies) run on the load generator's core.
        os.sched_setaffinity(0, {LOAD_CPU})
    results = Results()
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="bench-"))
        stack.callback(shutil.rmtree, work, True)
        servers = start_servers(options, stack, work)
        for number in range(options.rounds):
            print(f"round {number + 1}/{options.rounds} …", file=sys.stderr, flush=True)
            one_round(options, results, servers, work, number)
    summary = summarise(options, results)
    print(render(summary))
    out = options.out or ROOT / "results" / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out.parent / "latest.json").write_text(out.read_text()) if options.out is None else None
    print(f"\nresults written to {out}")
    return 0 if all(t["status"] == "PASS" for t in summary["targets"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
