"""Installing the repository's pinned npm projects from the test suite (skipped without node/npm)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def npm_ci(project: Path, *, marker: str, timeout: float = 900) -> None:
    """`npm ci` in `project` unless `node_modules/<marker>` is there; skips the test (one line saying
    why) without node/npm or when the pinned packages cannot be installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node/npm not found: {project.name} (real npm packages in workerd) is not run")
    if (project / "node_modules" / marker).exists():
        return
    proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=project, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        pytest.skip(f"npm ci failed in {project.name} ({tail[0]}): its tests are skipped")
