"""Contract suite options and fixtures: `--target emulator|replay|real` and `--record`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from contract.targets import (
    FIXTURES,
    LOCAL_TOKEN,
    RECORDED_CASSETTE,
    LocalServer,
    Target,
    local_target,
    real_credentials,
    real_target,
)

TARGETS = ("emulator", "replay", "real")
NO_CREDENTIALS = (
    "--target real needs CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID in the environment; not set"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("contract")
    group.addoption(
        "--target",
        choices=TARGETS,
        default="emulator",
        help="emulator: mock mode; replay: the cassettes in fixtures/; real: api.cloudflare.com",
    )
    group.addoption(
        "--record",
        action="store_true",
        default=False,
        help="with --target real: go through the emulator in record mode and refresh "
        f"fixtures/{RECORDED_CASSETTE}.json",
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """The project's `-n auto` (pyproject.toml) runs the contract suite in one process: a target
    (the real account's budget, a recording refreshed with --record) is one session's."""
    return 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live: a check that sends its own requests (not one held by a shipped "
        "cassette); on --target replay it runs only when fixtures hold a recording",
    )
    if config.getoption("--record") and config.getoption("--target") != "real":
        raise pytest.UsageError("--record only makes sense with --target real")


def recorded_exists() -> bool:
    return (FIXTURES / f"{RECORDED_CASSETTE}.json").is_file()


def pytest_report_header(config: pytest.Config) -> str:
    target = config.getoption("--target")
    line = f"contract target: {target}"
    if target == "real" and real_credentials() is None:
        line += f" (SKIPPED: {NO_CREDENTIALS})"
    if config.getoption("--record"):
        line += f" (recording into fixtures/{RECORDED_CASSETTE}.json)"
    return line


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    target = config.getoption("--target")
    if target == "real" and real_credentials() is None:
        skip = pytest.mark.skip(reason=NO_CREDENTIALS)
        for item in items:
            item.add_marker(skip)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"SKIPPED all {len(items)} checks: {NO_CREDENTIALS}")
        return
    if target == "replay" and not recorded_exists():
        keep = [i for i in items if i.get_closest_marker("live") is None]
        dropped = [i for i in items if i.get_closest_marker("live") is not None]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    f"replay: {len(dropped)} live checks deselected: no fixtures/"
                    f"{RECORDED_CASSETTE}.json yet (make it with --target real --record)"
                )


@pytest.fixture(scope="session")
def target_name(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--target"))


@pytest.fixture(scope="session")
def tmp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulator-data")


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, tmp_data: Path) -> Iterator[Target]:
    """Where the live checks send their requests."""
    from emulator.settings import Mode

    name = request.config.getoption("--target")
    server: LocalServer | None = None
    if name == "emulator":
        server = LocalServer(
            mode=Mode.MOCK, token=LOCAL_TOKEN, data_dir=tmp_data / "mock", plan="paid"
        ).start()
        tgt = local_target("emulator", server)
    elif name == "replay":
        server = LocalServer(
            mode=Mode.REPLAY,
            token=LOCAL_TOKEN,
            data_dir=tmp_data / "replay",
            cassette=RECORDED_CASSETTE,
            cassette_dir=FIXTURES,
            plan="paid",
        ).start()
        tgt = local_target("replay", server)
    else:
        creds = real_credentials()
        assert creds is not None
        token, account = creds
        if request.config.getoption("--record"):
            server = LocalServer(
                mode=Mode.RECORD,
                token=LOCAL_TOKEN,
                data_dir=tmp_data / "record",
                cassette=RECORDED_CASSETTE,
                cassette_dir=FIXTURES,
                plan="paid",
                upstream=os.environ.get("CONTRACT_UPSTREAM", "https://api.cloudflare.com"),
                upstream_token=token,
                upstream_account_id=account,
            ).start()
            tgt = local_target("real", server)
            tgt.gateway_id = os.environ.get("CLOUDFLARE_GATEWAY_ID")
        else:
            tgt = real_target(token, account)
    yield tgt
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    # A fresh connection per request: workerd closes idle keep-alive connections, and a request sent
    # on one just as it closes fails with ReadError (seen twice under a loaded full suite).
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=120.0, trust_env=False, limits=limits) as client:
        yield client


@pytest.fixture(scope="session")
def cassette_server(tmp_data: Path) -> Iterator[Callable[[str], LocalServer]]:
    """A replay server per shipped cassette (`--mode replay --cassette NAME --cassette-dir fixtures`)."""
    from emulator.settings import Mode

    servers: dict[str, LocalServer] = {}

    def get(name: str) -> LocalServer:
        if name not in servers:
            safe = name.replace("/", "_")
            servers[name] = LocalServer(
                mode=Mode.REPLAY,
                token=LOCAL_TOKEN,
                data_dir=tmp_data / f"cas-{safe}",
                cassette=name,
                cassette_dir=FIXTURES,
                plan="paid",
            ).start()
        return servers[name]

    yield get
    for server in servers.values():
        server.stop()
