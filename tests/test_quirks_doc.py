"""docs/quirks.md and `workers-ai-emulator quirks` come from the one quirks table and cannot drift from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from emulator.docgen.quirks import markdown
from emulator.quirks import QUIRKS

ROOT = Path(__file__).resolve().parent.parent


def test_docs_quirks_md_matches_the_table() -> None:
    assert (ROOT / "docs" / "quirks.md").read_text() == markdown(), (
        "regenerate with: workers-ai-emulator quirks --markdown > docs/quirks.md"
    )


def test_quirks_command_lists_every_quirk_and_its_state() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "emulator", "quirks", "--quirk", "double-slash-path=off"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in QUIRKS:
        assert name in out
    assert "double-slash-path  [off]" in out and "no-role-in-first-delta  [on]" in out
    md = subprocess.run(
        [sys.executable, "-m", "emulator", "quirks", "--markdown"], capture_output=True, text=True, check=True
    ).stdout
    assert md == markdown()
