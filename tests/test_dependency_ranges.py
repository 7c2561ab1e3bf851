"""Runtime dependencies take ranges (the emulator installs beside an application's own pins); the
project's own test environment pins exact versions; the lowest allowed versions really work.

The default suite checks the declarations and runs the emulator with pydantic's lowest version
(the dependency applications pin most often); the slow suite installs every lower bound together.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from tests.packaging import (
    LOWER_BOUNDS,
    ROOT,
    build_wheel,
    extra_pins,
    fresh_venv,
    lower_bounds,
    run,
    runtime_requirements,
)

# Suite files that need nothing beyond the runtime dependencies and the test tools installed below.
CORE_TESTS = [
    "tests/test_golden_bytes.py",
    "tests/test_record_replay.py",
    "tests/test_cassettes.py",
    "tests/test_ledger.py",
    "tests/test_accounting.py",
    "tests/test_control_plane.py",
    "tests/test_native_surface.py",
    "tests/test_core_fakes.py",
]
TEST_TOOLS = ["pytest", "pytest-aiohttp", "pytest-timeout", "jsonschema", "hypothesis", "mutagen"]


def test_runtime_dependencies_are_ranges_with_a_tested_lower_bound() -> None:
    bounds = lower_bounds()
    names = set()
    for req in runtime_requirements():
        name = req.name.lower()
        names.add(name)
        operators = {spec.operator for spec in req.specifier}
        assert "==" not in operators and "===" not in operators, f"{req}: a runtime dependency is a range"
        lower = [spec.version for spec in req.specifier if spec.operator == ">="]
        assert lower, f"{req}: needs a lower bound (>=)"
        assert name in bounds and Version(bounds[name]) == Version(lower[0]), (
            f"{LOWER_BOUNDS.name} must pin {name}=={lower[0]}"
        )
        assert any(spec.operator == "<" for spec in req.specifier), f"{req}: needs an upper bound"
    assert set(bounds) == names, f"{LOWER_BOUNDS.name} lists exactly the runtime dependencies"


def test_the_test_extra_pins_every_runtime_dependency_inside_its_range() -> None:
    pins = extra_pins()
    for req in runtime_requirements():
        pin = pins.get(req.name.lower())
        assert pin is not None, f"the test extra pins {req.name} (the project's own test environment)"
        (spec,) = pin.specifier
        assert spec.operator == "==", f"{pin}: the test extra pins an exact version"
        assert req.specifier.contains(spec.version), f"{pin} lies outside {req}"


def test_runs_with_the_lowest_pydantic(tmp_path: Path) -> None:
    """pydantic's lowest allowed version, ahead of this venv's on sys.path: cassettes round-trip
    (aliases, extra=forbid) and the golden answers are byte-identical."""
    target = tmp_path / "low"
    version = lower_bounds()["pydantic"]
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            f"pydantic=={version}",
            f"pydantic-core=={_core_for(version)}",
        ],
        timeout=300,
    )
    # Only the plugins these files use (loading every installed pytest plugin takes longer than the run).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)]),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    out = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "pytest_asyncio.plugin",
            "-p",
            "pytest_aiohttp.plugin",
            "-p",
            "pytest_timeout",
            "-o",
            "addopts=-m 'not slow'",  # pyproject.toml's without -n: this run does not load pytest-xdist
            "tests/test_golden_bytes.py",
            "tests/test_cassettes.py",
            "-k",
            "golden or round_trip or on_disk",
        ],
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert " passed" in out
    probe = run([sys.executable, "-c", "import pydantic; print(pydantic.VERSION)"], timeout=60, env=env)
    assert probe.strip() == version


def _core_for(pydantic_version: str) -> str:
    # pydantic pins its core exactly; these are the pairs of the lower bounds we declare.
    cores = {"2.10.0": "2.27.0"}
    return cores[pydantic_version]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lowest_versions_of_every_dependency_in_a_fresh_venv(tmp_path: Path) -> None:
    """The built wheel installed with constraints/lower-bounds.txt; the core suite runs against it."""
    wheel = build_wheel(tmp_path / "dist")
    python = fresh_venv(tmp_path / "venv")
    tools = [str(extra_pins()[name]) for name in TEST_TOOLS]
    run([str(python), "-m", "pip", "install", "-q", "-c", str(LOWER_BOUNDS), str(wheel), *tools], timeout=900)
    installed = run([str(python), "-m", "pip", "list", "--format=freeze"], timeout=60).lower()
    for name, version in lower_bounds().items():
        assert f"{name}=={version}" in installed, f"{name} is not at its lower bound {version}"
    # The suite's files run from a copy, so `emulator` is the installed wheel, not this checkout.
    suite = tmp_path / "suite"
    (suite / "tests").mkdir(parents=True)
    for path in (ROOT / "tests").glob("*.py"):
        (suite / "tests" / path.name).write_bytes(path.read_bytes())
    (suite / "fixtures").symlink_to(ROOT / "fixtures")
    (suite / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    slow: long suites\naddopts = -m 'not slow'\ntimeout = 300\n"
    )
    out = run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_TESTS], timeout=1200, cwd=suite
    )
    assert " passed" in out and " failed" not in out
    where = run([str(python), "-c", "import emulator; print(emulator.__file__)"], timeout=60, cwd=suite)
    assert "site-packages" in where
