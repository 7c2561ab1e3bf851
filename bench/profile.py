"""Where the server's CPU goes under one varied load scenario: server CPU per request, and py-spy's
profile of the server process summarised as the functions with the most samples.

    python bench/profile.py text                  # 5 s of varied `run/` text at c=16
    python bench/profile.py embeddings -d 10 --top 40

Same servers, requests and load generator as bench/run.py (its scenario names). CPU per request is
the server process's user + system time over the requests it answered, which drifts less with other
work on the machine than requests per second do. Without py-spy (`pip install py-spy`; it needs
ptrace rights over the server) only CPU per request is printed.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drivers import drive, pick, process_cpu_s
from run import LOAD_SCENARIOS, MAIN_CONCURRENCY, start_emulator, warm_up, write_replay_cassette


def summarise(collapsed: Path, top: int) -> str:
    """Functions by share of samples: `self` where the sample was taken, `total` anywhere on its stack."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    if not samples:
        return "no samples"
    lines = [f"{samples} samples", "", "self %   function"]
    lines += [f"{100 * n / samples:6.1f}   {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:6.1f}   {name}" for name, n in anywhere.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(LOAD_SCENARIOS))
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="seconds of load (default 5)")
    parser.add_argument("-c", "--concurrency", type=int, default=MAIN_CONCURRENCY)
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    parser.add_argument("--no-profile", action="store_true", help="CPU per request only")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                        help="auto: wrk when installed, else the Python load generator")
    args = parser.parse_args()
    scenario = LOAD_SCENARIOS[args.scenario]
    pyspy = None if args.no_profile else shutil.which("py-spy") or _beside_python("py-spy")
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
        stack.callback(shutil.rmtree, work, True)
        extra: tuple[str, ...] = ()
        if scenario.server == "replay":
            write_replay_cassette(work / "cassettes", "bench")
            extra = ("--mode", "replay", "--cassette", "bench", "--cassette-dir", str(work / "cassettes"),
                     "--ignore-field", "seed")
        server = start_emulator(scenario.server, work / "data", None, *extra)
        stack.callback(server.stop)
        requests = scenario.requests()
        warm_up(server, requests)
        recorder = None
        collapsed = work / "profile.txt"
        if pyspy:
            # Samples merged by function (not line); --nonblocking leaves the server running between them.
            recorder = subprocess.Popen(
                [pyspy, "record", "-p", str(server.server_pid), "-r", "250", "-f", "raw", "--function",
                 "-o", str(collapsed), "-d", str(int(args.duration) + 1), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = process_cpu_s(server.server_pid)
        load = drive(pick(args.loadgen), server.port, requests, concurrency=args.concurrency,
                     duration=args.duration, cpu=None, vary_base=10_000_000)
        spent = process_cpu_s(server.server_pid) - before
        per_request = spent / max(1, load.requests) * 1e6
        print(f"{scenario.label}: {load.rps:.0f} req/s, p50 {load.p50_ms:.2f} ms, server CPU "
              f"{per_request:.1f} µs/request over {load.requests} requests, {load.errors} errors")
        if recorder is not None:
            recorder.wait(timeout=args.duration + 60)
            if collapsed.exists():
                print(summarise(collapsed, args.top))
            else:
                print("py-spy wrote no profile (does it have ptrace rights over the server?)")


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else None


if __name__ == "__main__":
    main()
