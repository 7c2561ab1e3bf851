"""Per-call CPU time of the fakes alone, over varied requests (no server, no cache).

    python bench/fakes.py                 # every scenario, 2000 varied calls each (fewer for heavy ones)
    python bench/fakes.py text chat -n 5000

A microbenchmark to steer work on the fakes: the load figures of bench/run.py drift with the machine,
while CPU time per call of one function is steady enough to compare two versions of it. Each call gets
inputs of its own, so it measures what an uncached request costs: the seed derivation and the fake.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import PROMPTS, wav

from emulator.backends.mock import call_seed
from emulator.call import BinaryInput, Call, Surface
from emulator.catalog import load_catalog
from emulator.launch.allocator import keep_freed_memory
from emulator.tasks import FakeContext, fake_for

CATALOG = load_catalog()


def text_inputs(i: int) -> dict[str, Any]:
    return {"prompt": f"{PROMPTS[i % len(PROMPTS)]} (question {i})"}


def chat_inputs(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} (question {i})"}]}


SCENARIOS: dict[str, tuple[str, Callable[[int], Any], Surface, int]] = {
    # name: (model, inputs of call i, surface, default number of calls)
    "text": ("@cf/meta/llama-3-8b-instruct", text_inputs, Surface.NATIVE, 2000),
    "chat": ("@cf/meta/llama-3-8b-instruct", chat_inputs, Surface.CHAT, 2000),
    "long": ("@cf/meta/llama-3-8b-instruct", lambda i: {**text_inputs(i), "max_tokens": 1024},
             Surface.NATIVE, 1000),
    "embeddings": ("@cf/baai/bge-base-en-v1.5",
                   lambda i: {"text": [f"benchmark sentence {j} of batch {i} about lighthouses"
                                       for j in range(32)]}, Surface.NATIVE, 500),
    "embeddings100": ("@cf/baai/bge-large-en-v1.5",
                      lambda i: {"text": [f"text {j} of batch {i}" for j in range(100)]},
                      Surface.NATIVE, 200),
    "png": ("@cf/stabilityai/stable-diffusion-xl-base-1.0",
            lambda i: {"prompt": f"lighthouse number {i}", "width": 1024, "height": 1024},
            Surface.NATIVE, 50),
    "whisper": ("@cf/openai/whisper", lambda i: BinaryInput(data=wav(10.0, i), content_type="audio/wav"),
                Surface.NATIVE, 300),
    "translation": ("@cf/meta/m2m100-1.2b",
                    lambda i: {"text": f"{PROMPTS[i % len(PROMPTS)]} (sentence {i})", "source_lang": "en",
                               "target_lang": ("fr", "de", "ja", "ru", "hi")[i % 5]}, Surface.NATIVE, 2000),
}


def measure(name: str, n: int, repeats: int) -> float:
    """CPU seconds per call of the fake (plus its seed) over `n` calls with distinct inputs: the least
    of `repeats` passes over them, each call with inputs never seen before (the fakes keep no answers,
    but the embeddings' word table does), which is steadier than a mean when other work shares the
    machine."""
    model_name, make, surface, _ = SCENARIOS[name]
    model = CATALOG.get(model_name)
    assert model is not None, model_name
    fake = fake_for(model)
    best = float("inf")
    for repeat in range(repeats):
        calls = [Call(model=model, inputs=make(repeat * n + i), surface=surface) for i in range(n)]
        fake(calls[0], FakeContext(seed=call_seed(calls[0], 0)))  # warm lazily built tables
        started = time.process_time()
        for call in calls[1:]:
            fake(call, FakeContext(seed=call_seed(call, 0)))
        best = min(best, (time.process_time() - started) / (n - 1))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("-n", type=int, default=0, help="calls per pass (default: per scenario)")
    parser.add_argument("-r", "--repeats", type=int, default=5, help="passes; the fastest counts (default 5)")
    args = parser.parse_args()
    keep_freed_memory()  # as `serve` does: large arrays reuse heap pages instead of faulting new ones
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    for name in args.scenarios or SCENARIOS:
        n = max(2, args.n or SCENARIOS[name][3] // 4)
        cost = measure(name, n, args.repeats)
        print(f"{name:<14} {cost * 1e6:10.1f} µs/call (fastest of {args.repeats} passes of {n} varied calls)",
              flush=True)


if __name__ == "__main__":
    main()
