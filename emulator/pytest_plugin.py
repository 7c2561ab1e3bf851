"""pytest plugin: a `workers_ai` fixture on a real emulator, stubs and faults, a cost report, a budget gate.

Registered through the `pytest11` entry point `workers_ai`. One emulator per session runs in a
background thread and is reset before every test that uses the fixture; a test whose
`@pytest.mark.workers_ai(...)` asks for different server settings gets a dedicated server.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from emulator.accounting.pricing import dollars
from emulator.client import EmulatorClient
from emulator.launch.background import BackgroundServer
from emulator.settings import Mode, Settings

ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
TOKEN = "workers-ai-test-token"
# Marker keywords that change the server (a differing value means a dedicated server for the test).
SERVER_KEYS = frozenset({"mode", "cassette", "plan", "daily_neurons", "seed", "rate_limits", "quirks"})
MARKER_KEYS = SERVER_KEYS | {"budget"}
RECORD_MODES = {"new": Mode.REPLAY_OR_RECORD, "all": Mode.RECORD}


@dataclass
class TestCost:
    nodeid: str
    neurons: float = 0.0
    requests: int = 0
    by_model: dict[str, float] = field(default_factory=dict)


COSTS = pytest.StashKey[list[TestCost]]()
FIXTURE = pytest.StashKey["WorkersAI"]()


class WorkersAI:
    """What a test gets: URLs, credentials, ready-made SDK clients, stubs, faults, log and usage."""

    def __init__(self, server: BackgroundServer) -> None:
        self.server = server
        self.base_url = server.base
        self.account_id = ACCOUNT_ID
        self.token = server.settings.token or TOKEN
        self.client_v4_base_url = f"{self.base_url}/client/v4"
        self.openai_base_url = f"{self.client_v4_base_url}/accounts/{ACCOUNT_ID}/ai/v1"
        self.run_base_url = f"{self.client_v4_base_url}/accounts/{ACCOUNT_ID}/ai/run"
        self.control = EmulatorClient(self.base_url, token=server.settings.token)

    @cached_property
    def cloudflare(self) -> Any:
        """A `cloudflare.Cloudflare` client on the emulator, without retries (faults show at once)."""
        try:
            import cloudflare
        except ImportError:
            pytest.skip("workers_ai.cloudflare needs the `cloudflare` package (pip install cloudflare)")
        return cloudflare.Cloudflare(api_token=self.token, base_url=self.client_v4_base_url, max_retries=0)

    @cached_property
    def openai(self) -> Any:
        """An `openai.OpenAI` client on the emulator's /ai/v1 surface, without retries."""
        try:
            import openai
        except ImportError:
            pytest.skip("workers_ai.openai needs the `openai` package (pip install openai)")
        return openai.OpenAI(api_key=self.token, base_url=self.openai_base_url, max_retries=0)

    def stub(self, **spec: Any) -> dict[str, Any]:
        """Make matching calls answer `text=`, `result=`, `error=` (a code) or `results=[...]` in turn."""
        return self.control.stub(**spec)

    def fault(self, kind: str | int, **spec: Any) -> dict[str, Any]:
        """Inject a Cloudflare failure: capacity, timeout, upstream, server_error, daily_limit, latency, …"""
        return self.control.fault(kind, **spec)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.control.requests()

    @property
    def usage(self) -> dict[str, Any]:
        return self.control.usage()

    def reset(self) -> None:
        self.control.reset()

    def set_clock(
        self, now: datetime | str | None = None, *, advance_seconds: float | None = None, real: bool = False
    ) -> dict[str, Any]:
        return self.control.set_clock(now, advance_seconds=advance_seconds, real=real)

    def cost(self) -> TestCost:
        """Neurons spent since the last reset, from the request log."""
        cost = TestCost("")
        by_model: dict[str, float] = defaultdict(float)
        for entry in self.control.requests():
            cost.requests += 1
            if entry["neurons"]:
                by_model[entry["model"] or "?"] += entry["neurons"]
        cost.by_model = dict(by_model)
        cost.neurons = sum(by_model.values())
        return cost

    def close(self) -> None:
        for name in ("cloudflare", "openai"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("workers_ai", "Cloudflare Workers AI emulator")
    group.addoption(
        "--workers-ai-mode",
        choices=[m.value for m in Mode],
        default=None,
        help="Backend mode of the emulator (default: mock).",
    )
    group.addoption(
        "--workers-ai-record",
        nargs="?",
        const="new",
        choices=sorted(RECORD_MODES),
        default=None,
        help="Record real calls: `new` (default) replays what the cassette has and records the "
        "rest (replay-or-record); `all` records everything.",
    )
    group.addoption("--workers-ai-cassette-dir", default=None, help="Directory of cassettes.")
    group.addoption(
        "--workers-ai-report",
        type=int,
        default=10,
        metavar="N",
        help="Show the N most expensive tests and models at the end (0: no report).",
    )
    group.addoption(
        "--workers-ai-budget",
        type=float,
        default=None,
        metavar="NEURONS",
        help="Fail any test that spends more than NEURONS.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "workers_ai(mode=None, cassette=None, plan=None, daily_neurons=None, seed=None, budget=None): "
        "emulator settings for this test (a dedicated server when they differ) and its neuron budget",
    )
    config.stash[COSTS] = []


def session_settings(config: pytest.Config, data_dir: Path) -> Settings:
    mode = config.getoption("--workers-ai-mode") or "mock"
    record = config.getoption("--workers-ai-record")
    if record is not None:
        mode = RECORD_MODES[record].value
    cassette_dir = config.getoption("--workers-ai-cassette-dir")
    return Settings(
        port=0,
        data_dir=data_dir,
        token=TOKEN,
        mode=Mode(mode),
        cassette_dir=Path(cassette_dir) if cassette_dir else None,
    )


def _start(settings: Settings) -> BackgroundServer:
    try:
        return BackgroundServer(settings).start()
    except Exception as exc:
        pytest.fail(f"workers_ai: the emulator did not start ({type(exc).__name__}: {exc})", pytrace=False)


@pytest.fixture(scope="session")
def workers_ai_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundServer]:
    """One emulator for the whole session, in a background thread."""
    server = _start(session_settings(request.config, tmp_path_factory.mktemp("workers-ai")))
    yield server
    server.stop()


def _marker_kwargs(item: pytest.Item) -> dict[str, Any]:
    marker = item.get_closest_marker("workers_ai")
    kwargs = dict(marker.kwargs) if marker else {}
    unknown = set(kwargs) - MARKER_KEYS
    if unknown:
        pytest.fail(
            f"@pytest.mark.workers_ai got unknown argument(s) {sorted(unknown)}; "
            f"known: {sorted(MARKER_KEYS)}",
            pytrace=False,
        )
    return kwargs


@pytest.fixture
def workers_ai(
    request: pytest.FixtureRequest, workers_ai_server: BackgroundServer, tmp_path: Path
) -> Iterator[WorkersAI]:
    """A reset emulator for this test (dedicated if the test's marker changes server settings)."""
    overrides = {k: v for k, v in _marker_kwargs(request.node).items() if k in SERVER_KEYS}
    base = workers_ai_server.settings
    if overrides.get("mode") is not None:
        overrides["mode"] = Mode(overrides["mode"])
    overrides = {k: v for k, v in overrides.items() if v is not None and getattr(base, k) != v}
    dedicated = None
    if overrides:
        settings = base.model_copy(
            update={**overrides, "port": 0, "data_dir": tmp_path / "workers-ai", "ledger_path": None}
        )
        dedicated = _start(settings)
    ai = WorkersAI(dedicated or workers_ai_server)
    if dedicated is None:
        ai.reset()
    request.node.stash[FIXTURE] = ai
    try:
        yield ai
    finally:
        ai.close()
        if dedicated is not None:
            dedicated.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                               ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    ai = item.stash.get(FIXTURE, None)
    if report.when != "call" or ai is None:
        return report
    try:
        cost = ai.cost()
    except Exception:  # a test that broke the server still gets its own report
        return report
    cost.nodeid = item.nodeid
    item.config.stash[COSTS].append(cost)
    budget = _marker_kwargs(item).get("budget", item.config.getoption("--workers-ai-budget"))
    if budget is not None and cost.neurons > budget and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = (
            f"Workers AI budget exceeded: this test spent {cost.neurons:,.2f} neurons "
            f"(${dollars(cost.neurons):.4f}) in {cost.requests} request(s); "
            f"budget {budget:,.2f} neurons. By model: "
            + ", ".join(f"{m} {n:,.2f}" for m, n in sorted(cost.by_model.items(), key=lambda kv: -kv[1]))
        )
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    costs = config.stash.get(COSTS, [])
    top = config.getoption("--workers-ai-report")
    if not costs or not top:
        return
    tr = terminalreporter
    total = sum(c.neurons for c in costs)
    tr.write_sep("=", "Workers AI cost (emulated neurons, $0.011 per 1,000)")
    tr.write_line(f"{'neurons':>12} {'dollars':>10}  test")
    for cost in sorted(costs, key=lambda c: -c.neurons)[:top]:
        tr.write_line(f"{cost.neurons:>12,.2f} {dollars(cost.neurons):>10.4f}  {cost.nodeid}")
    by_model: dict[str, float] = defaultdict(float)
    for cost in costs:
        for model, neurons in cost.by_model.items():
            by_model[model] += neurons
    if by_model:
        tr.write_line("")
        tr.write_line(f"{'neurons':>12} {'dollars':>10}  model")
        for model, neurons in sorted(by_model.items(), key=lambda kv: -kv[1])[:top]:
            tr.write_line(f"{neurons:>12,.2f} {dollars(neurons):>10.4f}  {model}")
    tr.write_line(f"total: {total:,.2f} neurons = ${dollars(total):.4f} over {len(costs)} test(s)")
