"""Installing the repository's pinned npm projects from the test suite (skipped without node/npm)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import run_dir


def npm_ci(project: Path, *, marker: str, timeout: float = 900) -> None:
    """`npm ci` in `project` unless `node_modules/<marker>` is there; skips the test (one line saying
    why) without node/npm or when the pinned packages cannot be installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node/npm not found: {project.name} (real npm packages in workerd) is not run")
    # One install per project at a time: pytest-xdist workers share the run's directory, and a
    # test seeing another worker's half-written node_modules would fail.
    name = hashlib.sha256(str(project.resolve()).encode()).hexdigest()[:16]
    fd = os.open(run_dir.path() / f"npm-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if (project / "node_modules" / marker).exists():
            return
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=project, capture_output=True,
                              text=True, timeout=timeout)
    finally:
        os.close(fd)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        pytest.skip(f"npm ci failed in {project.name} ({tail[0]}): its tests are skipped")
