"""Helpers for the install tests: build this project's wheel, install packages into fresh places."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LOWER_BOUNDS = ROOT / "constraints" / "lower-bounds.txt"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def runtime_requirements() -> list[Requirement]:
    return [Requirement(r) for r in pyproject()["project"]["dependencies"]]


def extra_pins() -> dict[str, Requirement]:
    """The `test` extra's requirements by lower-cased name."""
    reqs = [Requirement(r) for r in pyproject()["project"]["optional-dependencies"]["test"]]
    return {r.name.lower(): r for r in reqs}


def lower_bounds() -> dict[str, str]:
    """constraints/lower-bounds.txt as name → version."""
    pins: dict[str, str] = {}
    for line in LOWER_BOUNDS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def run(cmd: list[str], *, timeout: float, cwd: Path | None = None, env: dict | None = None) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert out.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    )
    return out.stdout


def build_wheel(dest: Path) -> Path:
    """This checkout as a wheel (no network, no build isolation: setuptools comes from this venv)."""
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dest),
            str(ROOT),
        ],
        timeout=300,
    )
    (wheel,) = dest.glob("workers_ai_emulator-*.whl")
    return wheel


def fresh_venv(where: Path) -> Path:
    """A new virtualenv (with pip); returns its python."""
    run([sys.executable, "-m", "venv", str(where)], timeout=120)
    return where / "bin" / "python"
