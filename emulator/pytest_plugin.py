"""pytest plugin: a `workers_ai` fixture on a real emulator, stubs and faults, cassettes, a cost report,
a budget gate.

Registered through the `pytest11` entry point `workers_ai`. One emulator per session runs in a
background thread and is reset before every test that uses the fixture; a test whose
`@pytest.mark.workers_ai(...)` asks for different server settings gets a dedicated server.

Cassettes follow pytest-recording's conventions: each test's recording sits beside the test file,
`cassettes/<module>/<test>.json` (`@pytest.mark.workers_ai(cassette="name")` names or shares one),
and the record modes are `none`, `once`, `new_episodes` and `all`. A test whose cassette exists
replays it; one without a cassette gets the deterministic fakes.
"""

from __future__ import annotations

import enum
import os
import re
from collections import defaultdict
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from emulator.accounting.pricing import dollars
from emulator.client import EmulatorClient
from emulator.settings import DEFAULT_ACCOUNT, ENV_PREFIX, Hints, Mode, Settings

if TYPE_CHECKING:
    from emulator.launch.background import BackgroundServer

ACCOUNT_ID = DEFAULT_ACCOUNT
TOKEN = "workers-ai-test-token"
# Marker keywords that change the server (a differing value means a dedicated server for the test).
SERVER_KEYS = frozenset({"plan", "daily_neurons", "seed", "rate_limits", "quirks"})
# Marker keywords that choose the test's backend and cassette (switched on the server, no new server).
BACKEND_KEYS = frozenset({"mode", "cassette", "record_mode", "ignore_fields"})
MARKER_KEYS = SERVER_KEYS | BACKEND_KEYS | {"budget"}
FORWARDING = frozenset({Mode.RECORD, Mode.REPLAY_OR_RECORD, Mode.PASSTHROUGH})


class RecordMode(enum.StrEnum):
    """pytest-recording's record modes, in the emulator's backend modes."""

    NONE = "none"  # replay only: a call the cassette lacks fails
    ONCE = "once"  # record a cassette that does not exist yet; replay one that does
    NEW_EPISODES = "new_episodes"  # replay what the cassette has, record the rest into it
    ALL = "all"  # record everything again, replacing the cassette

    def mode(self, cassette_exists: bool) -> Mode:
        if self is RecordMode.ONCE:
            return Mode.REPLAY if cassette_exists else Mode.RECORD
        return {
            RecordMode.NONE: Mode.REPLAY,
            RecordMode.NEW_EPISODES: Mode.REPLAY_OR_RECORD,
            RecordMode.ALL: Mode.RECORD,
        }[self]


@dataclass(frozen=True)
class Backend:
    """What one test's server answers from: a mode, and the cassette it replays or records."""

    mode: Mode
    cassette_dir: Path
    cassette: str
    ignore_fields: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return self.cassette_dir / f"{self.cassette}.json"

    @property
    def uses_cassette(self) -> bool:
        return self.mode not in (Mode.MOCK, Mode.PASSTHROUGH)


@dataclass
class Recorded:
    """A cassette this session wrote, for the summary at the end."""

    path: Path
    interactions: int


@dataclass
class TestCost:
    nodeid: str
    neurons: float = 0.0
    requests: int = 0
    by_model: dict[str, float] = field(default_factory=dict)


COSTS = pytest.StashKey[list[TestCost]]()
FIXTURE = pytest.StashKey["WorkersAI"]()
RECORDED = pytest.StashKey[dict[Path, Recorded]]()
CURRENT = pytest.StashKey[dict[int, Backend]]()  # id(server) → the backend it was switched to


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
            pytest.fail(
                "workers_ai.cloudflare needs the `cloudflare` package: pip install cloudflare", pytrace=False
            )
        return cloudflare.Cloudflare(api_token=self.token, base_url=self.client_v4_base_url, max_retries=0)

    @cached_property
    def openai(self) -> Any:
        """An `openai.OpenAI` client on the emulator's /ai/v1 surface, without retries."""
        try:
            import openai
        except ImportError:
            pytest.fail("workers_ai.openai needs the `openai` package: pip install openai", pytrace=False)
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
        help="Backend mode of every test's emulator (default: a test replays its cassette when it "
        "has one, and gets the fakes otherwise).",
    )
    group.addoption(
        "--workers-ai-record-mode",
        choices=[m.value for m in RecordMode],
        default=None,
        help="Cassettes as pytest-recording does: none (replay only), once (record missing "
        "cassettes), new_episodes (record calls a cassette lacks), all (record everything again).",
    )
    group.addoption(
        "--workers-ai-record",
        action="store_const",
        const=RecordMode.NEW_EPISODES.value,
        dest="workers_ai_record",
        default=None,
        help="Shorthand for --workers-ai-record-mode=new_episodes.",
    )
    group.addoption(
        "--workers-ai-cassette-dir",
        default=None,
        help="Keep cassettes in DIR/<module>/<test>.json (default: cassettes/<module>/ beside each "
        "test file).",
    )
    group.addoption(
        "--workers-ai-ignore-field",
        action="append",
        default=[],
        metavar="FIELD",
        help="Request-body field replay matching ignores (dotted path, * wildcard); repeatable.",
    )
    group.addoption(
        "--workers-ai-upstream",
        default=os.environ.get(ENV_PREFIX + "UPSTREAM", "https://api.cloudflare.com"),
        help="Real API base that recording forwards to (default: https://api.cloudflare.com).",
    )
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
        "workers_ai(cassette=None, record_mode=None, ignore_fields=None, mode=None, plan=None, "
        "daily_neurons=None, seed=None, budget=None): this test's cassette and record mode, emulator "
        "settings (a dedicated server when they differ) and its neuron budget",
    )
    config.stash[COSTS] = []
    config.stash[RECORDED] = {}
    config.stash[CURRENT] = {}


def _record_mode(config: pytest.Config, kwargs: dict[str, Any]) -> RecordMode | None:
    value = kwargs.get("record_mode") or config.getoption("--workers-ai-record-mode")
    value = value or config.getoption("workers_ai_record")
    if value is None:
        return None
    try:
        return RecordMode(value)
    except ValueError:
        pytest.fail(
            f"@pytest.mark.workers_ai(record_mode={value!r}): one of {[m.value for m in RecordMode]}",
            pytrace=False,
        )


def _upstream_credentials() -> tuple[str | None, str | None]:
    return os.environ.get("CLOUDFLARE_API_TOKEN") or None, os.environ.get("CLOUDFLARE_ACCOUNT_ID") or None


def session_settings(config: pytest.Config, data_dir: Path) -> Settings:
    token, account = _upstream_credentials()
    return Settings(
        port=0,
        data_dir=data_dir,
        token=TOKEN,
        mode=Mode.MOCK,
        upstream=config.getoption("--workers-ai-upstream"),
        upstream_token=token,
        upstream_account_id=account,
        ignore_fields=list(config.getoption("--workers-ai-ignore-field")),
        hints=Hints.PYTEST,
    )


def cassette_name(item: pytest.Item) -> str:
    """`test_name` or `TestClass.test_name`, parameters kept, made safe as a file name."""
    cls = getattr(item, "cls", None)
    parts = [cls.__name__] if cls is not None else []
    parts.append(item.name)
    return re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "-", ".".join(parts))


def backend_for_test(item: pytest.Item, kwargs: dict[str, Any]) -> Backend:
    """The mode and cassette of one test, from its marker and the command line."""
    config = item.config
    module = item.path.stem
    root = config.getoption("--workers-ai-cassette-dir")
    directory = (Path(root).resolve() / module) if root else item.path.parent / "cassettes" / module
    ignore = tuple(config.getoption("--workers-ai-ignore-field")) + tuple(kwargs.get("ignore_fields") or ())
    backend = Backend(Mode.MOCK, directory, kwargs.get("cassette") or cassette_name(item), ignore)
    explicit = kwargs.get("mode") or config.getoption("--workers-ai-mode")
    record = _record_mode(config, kwargs)
    if explicit:
        mode = Mode(explicit)
    elif record is not None:
        mode = record.mode(backend.path.is_file())
    else:
        mode = Mode.REPLAY if backend.path.is_file() else Mode.MOCK
    return Backend(mode, directory, backend.cassette, ignore)


def _start(settings: Settings) -> BackgroundServer:
    # The server stack (aiohttp's server, ~0.65 s to import) loads when a test first asks for the
    # emulator, not in every pytest run of a project that has the package installed.
    from emulator.launch.background import BackgroundServer

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


def _switch(ai: WorkersAI, backend: Backend, current: dict[int, Backend]) -> None:
    """Point the server at this test's backend (skipped when it already is)."""
    if current.get(id(ai.server)) == backend:
        return
    ai.control.set_mode(
        backend.mode.value,
        cassette=backend.cassette,
        cassette_dir=str(backend.cassette_dir),
        ignore_fields=list(backend.ignore_fields),
    )
    current[id(ai.server)] = backend


def _interactions(path: Path) -> int:
    """Interactions in a cassette file: one JSON document (format 1) or a header line plus one line
    per interaction (format 2)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return 0
    try:
        return len(orjson.loads(raw).get("interactions", []))
    except (ValueError, AttributeError):
        return max(sum(1 for line in raw.splitlines() if line.strip()) - 1, 0)


@pytest.fixture
def workers_ai(
    request: pytest.FixtureRequest, workers_ai_server: BackgroundServer, tmp_path: Path
) -> Iterator[WorkersAI]:
    """A reset emulator for this test (dedicated if the test's marker changes server settings), answering
    from the test's cassette when it has one (or records it), from the fakes otherwise."""
    kwargs = _marker_kwargs(request.node)
    backend = backend_for_test(request.node, kwargs)
    if backend.mode in FORWARDING and not workers_ai_server.settings.upstream_token:
        pytest.fail(
            f"workers_ai: {backend.mode.value} mode calls the real API "
            f"({workers_ai_server.settings.upstream}), which needs CLOUDFLARE_API_TOKEN and "
            "CLOUDFLARE_ACCOUNT_ID in the environment (the local token and account id are not "
            "accepted there).",
            pytrace=False,
        )
    overrides = {k: v for k, v in kwargs.items() if k in SERVER_KEYS}
    base = workers_ai_server.settings
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
    current = request.config.stash[CURRENT]
    _switch(ai, backend, current)
    before = backend.path.stat().st_mtime_ns if backend.path.is_file() else None
    request.node.stash[FIXTURE] = ai
    try:
        yield ai
    finally:
        ai.close()
        if dedicated is not None:
            current.pop(id(dedicated), None)
            dedicated.stop()
        written = backend.path.is_file() and backend.path.stat().st_mtime_ns != before
        if backend.mode in FORWARDING and written:
            recorded = request.config.stash[RECORDED]
            recorded[backend.path] = Recorded(backend.path, _interactions(backend.path))


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Under a record mode: where cassettes go, and which real credentials recording uses."""
    record = config.getoption("--workers-ai-record-mode") or config.getoption("workers_ai_record")
    explicit = config.getoption("--workers-ai-mode")
    if record is None and explicit not in (m.value for m in FORWARDING):
        return []
    root = config.getoption("--workers-ai-cassette-dir")
    where = (
        f"{Path(root).resolve()}/<module>/<test>.json"
        if root
        else "cassettes/<module>/<test>.json beside each test file"
    )
    token, account = _upstream_credentials()
    lines = [f"workers_ai: {record or explicit} mode, cassettes in {where}"]
    upstream = config.getoption("--workers-ai-upstream")
    if token and account:
        lines.append(
            f"workers_ai: real calls go to {upstream} as account {account} (token from CLOUDFLARE_API_TOKEN)"
        )
    else:
        named = (("CLOUDFLARE_API_TOKEN", token), ("CLOUDFLARE_ACCOUNT_ID", account))
        missing = " and ".join(name for name, value in named if not value)
        lines.append(f"workers_ai: WARNING: {missing} not set: tests that must record will fail")
    return lines


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
            f"(${_usd(dollars(cost.neurons))}) in {cost.requests} request(s); "
            f"budget {budget:,.2f} neurons. By model: "
            + ", ".join(f"{m} {n:,.2f}" for m, n in sorted(cost.by_model.items(), key=lambda kv: -kv[1]))
        )
    return report


def _usd(value: float) -> str:
    """Dollars with enough digits for one test's cost (a few neurons are millionths of a dollar)."""
    return f"{value:.7f}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    _recorded_summary(terminalreporter, config)
    costs = config.stash.get(COSTS, [])
    top = config.getoption("--workers-ai-report")
    if not costs or not top:
        return
    tr = terminalreporter
    total = sum(c.neurons for c in costs)
    tr.write_sep("=", "Workers AI cost (emulated neurons, $0.011 per 1,000)")
    tr.write_line(f"{'neurons':>12} {'dollars':>11}  test")
    for cost in sorted(costs, key=lambda c: -c.neurons)[:top]:
        tr.write_line(f"{cost.neurons:>12,.2f} {_usd(dollars(cost.neurons)):>11}  {cost.nodeid}")
    by_model: dict[str, float] = defaultdict(float)
    for cost in costs:
        for model, neurons in cost.by_model.items():
            by_model[model] += neurons
    if by_model:
        tr.write_line("")
        tr.write_line(f"{'neurons':>12} {'dollars':>11}  model")
        for model, neurons in sorted(by_model.items(), key=lambda kv: -kv[1])[:top]:
            tr.write_line(f"{neurons:>12,.2f} {_usd(dollars(neurons)):>11}  {model}")
    tr.write_line(f"total: {total:,.2f} neurons = ${_usd(dollars(total))} over {len(costs)} test(s)")


def _recorded_summary(tr: Any, config: pytest.Config) -> None:
    recorded = config.stash.get(RECORDED, {})
    if not recorded:
        return
    tr.write_sep("=", "Workers AI cassettes recorded")
    for item in sorted(recorded.values(), key=lambda r: str(r.path)):
        try:
            shown = item.path.relative_to(config.rootpath)
        except ValueError:
            shown = item.path
        tr.write_line(f"{item.interactions:>5} interaction(s)  {shown}")
    tr.write_line(f"{len(recorded)} cassette(s) written; they replay on the next run (commit them)")
