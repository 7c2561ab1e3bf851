"""Drive a server with a fixed closed-loop load: `wrk` when installed, else the Python load generator."""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOADGEN = Path(__file__).with_name("loadgen.py")
VARY_MARKER = "@@N@@"

# wrk reads the requests from a file (one `METHOD<TAB>PATH<TAB>HEADERS<TAB>BODY` per line, HEADERS being
# the request's own `Name: value` pairs on top of the common ones, separated by \x1f) and rotates through
# them (a single fixed request is sent as wrk's static request). In a body, every VARY_MARKER becomes a number
# unique to that request (`vary_base` + 16 × its sequence number + the thread), so a varied load never
# sends the same bytes twice. `done` prints the exact percentiles as one JSON line, so nothing is parsed
# from wrk's human output.
WRK_SCRIPT = r"""
local path = os.getenv("BENCH_REQUESTS")
local base = tonumber(os.getenv("BENCH_VARY_BASE") or "0")
local marker = "@@N@@"
local lines = {}
for line in io.lines(path) do lines[#lines + 1] = line end
local headers = {["Authorization"] = "Bearer bench", ["Content-Type"] = "application/json"}
local function parse(line)
  local method, target, extra, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  if body == "" then body = nil end
  local all = {}
  for k, v in pairs(headers) do all[k] = v end
  for pair in extra:gmatch("[^\31]+") do
    local k, v = pair:match("^([^:]*):%s*(.*)$")
    if k then all[k] = v end
  end
  return method, target, body, all
end
local function split(body)
  -- The body cut at every marker, or nil when it has none.
  if body == nil or not body:find(marker, 1, true) then return nil end
  local parts, from = {}, 1
  while true do
    local at = body:find(marker, from, true)
    if not at then parts[#parts + 1] = body:sub(from); return parts end
    parts[#parts + 1] = body:sub(from, at - 1)
    from = at + #marker
  end
end
local next_tid = 0
setup = function(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
if #lines == 1 and not split(select(3, parse(lines[1]))) then
  -- One fixed request: leave `request` undefined so wrk sends a prebuilt buffer (no Lua call per
  -- request), which keeps the load generator's own CPU as small as it can be.
  local all
  wrk.method, wrk.path, wrk.body, all = parse(lines[1])
  for k, v in pairs(all) do wrk.headers[k] = v end
else
  local fixed, templates = {}, {}
  local i, n = 0, 0
  init = function(args)
    for k, line in ipairs(lines) do
      local method, target, body, all = parse(line)
      local parts = split(body)
      if parts then
        templates[k] = {method, target, parts, all}
      else
        fixed[k] = wrk.format(method, target, all, body)
      end
    end
  end
  request = function()
    i = i % #lines + 1
    local t = templates[i]
    if t == nil then return fixed[i] end
    -- Every marker becomes a number no other request of this run (any thread) carries.
    n = n + 1
    local number = string.format("%d", base + n * 16 + (tid or 0))
    return wrk.format(t[1], t[2], t[4], table.concat(t[3], number))
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('JSON {"requests": %d, "elapsed": %f, "p50": %f, "p99": %f, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e6, latency:percentile(99) / 1e6,
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(slots=True)
class Load:
    requests: int
    errors: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float = 0.0  # CPU time the server process used meanwhile (user + system)
    load_cpu_s: float = 0.0  # CPU time the load generator's processes used (user + system)

    @property
    def load_cores(self) -> float:
        """Cores the load generator kept busy: what the servers could not have on a shared machine."""
        return self.load_cpu_s / self.elapsed if self.elapsed else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_us(self) -> float:
        """Server CPU per answered request: steadier than req/s when other work shares the machine."""
        return self.server_cpu_s / self.requests * 1e6 if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rps": round(self.rps, 1), "p50_ms": round(self.p50_ms, 3), "p99_ms": round(self.p99_ms, 3),
                "requests": self.requests, "errors": self.errors, "cpu_us": round(self.cpu_us, 1)}


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and all its threads so far (Linux /proc), else 0."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def pick(loadgen: str) -> str:
    if loadgen == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if loadgen == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install wrk), use --loadgen python")
    return loadgen


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """The command run on one core (taskset); with `cpu=None`, on every core. The benchmark pins itself
    to the load generator's core, and children inherit that: "unpinned" must be said explicitly."""
    if not shutil.which("taskset"):
        return cmd
    cores = str(cpu) if cpu is not None else f"0-{(os.cpu_count() or 1) - 1}"
    return ["taskset", "-c", cores, *cmd]


def drive(tool: str, port: int, requests: list[dict[str, Any]], *, concurrency: int, duration: float,
          cpu: int | None, threads: int = 1, vary_base: int = 0) -> Load:
    """Closed-loop load: `concurrency` keep-alive connections for `duration` seconds. Bodies holding
    VARY_MARKER get a number of their own on every request, starting above `vary_base`."""
    before = _children_cpu_s()
    if tool == "wrk":
        load = _wrk(port, requests, concurrency=concurrency, duration=duration, cpu=cpu, threads=threads,
                    vary_base=vary_base)
    else:
        load = _python(port, requests, concurrency=concurrency, duration=duration, cpu=cpu, procs=threads,
                       vary_base=vary_base)
    load.load_cpu_s = _children_cpu_s() - before  # the generator's processes have been waited for
    return load


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk(port: int, requests: list[dict[str, Any]], *, concurrency: int, duration: float, cpu: int | None,
         threads: int, vary_base: int) -> Load:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script, lines = Path(tmp) / "bench.lua", Path(tmp) / "requests.tsv"
        script.write_text(WRK_SCRIPT)
        lines.write_text("".join(f"{r['method']}\t{r['path']}\t{_header_field(r)}\t{r.get('body', '')}\n"
                                 for r in requests))
        # wrk only takes whole seconds.
        seconds = max(1, math.ceil(duration))
        cmd = pinned(["wrk", "-t", str(min(threads, concurrency)), "-c", str(concurrency),
                      "-d", f"{seconds}s", "--timeout", "10s", "-s", str(script),
                      f"http://127.0.0.1:{port}"], cpu)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 30,
                             env={**os.environ, "BENCH_REQUESTS": str(lines),
                                  "BENCH_VARY_BASE": str(vary_base)})
    line = next(x for x in out.stdout.splitlines() if x.startswith("JSON "))
    data = json.loads(line[5:])
    return Load(data["requests"], data["errors"], data["elapsed"], data["p50"] * 1000, data["p99"] * 1000)


def _header_field(request: dict[str, Any]) -> str:
    """A request's own headers as one field of wrk's request file."""
    return "\x1f".join(f"{k}: {v}" for k, v in (request.get("headers") or {}).items())


def _python(port: int, requests: list[dict[str, Any]], *, concurrency: int, duration: float, cpu: int | None,
            procs: int, vary_base: int) -> Load:
    procs = max(1, min(procs, concurrency))
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    children = []
    for tid, share in enumerate(shares):
        job = {"host": "127.0.0.1", "port": port, "concurrency": share, "duration": duration,
               "vary_base": vary_base + tid, "marker": VARY_MARKER,
               "requests": [{"method": r["method"], "path": r["path"], "body": r.get("body", ""),
                             "headers": {"Authorization": "Bearer bench", "Content-Type": "application/json",
                                         **(r.get("headers") or {})}}
                            for r in requests]}
        child = subprocess.Popen(pinned([sys.executable, str(LOADGEN)], cpu), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdin is not None
        child.stdin.write(json.dumps(job))
        child.stdin.close()
        children.append(child)
    results = []
    for child in children:
        assert child.stdout is not None
        results.append(json.loads(child.stdout.read()))
        child.wait(timeout=duration + 30)
    latencies = sorted(x for r in results for x in r["latencies"])
    return Load(len(latencies), sum(r["errors"] for r in results), max(r["elapsed"] for r in results),
                percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000)
