"""The project stands alone: what its docs, code and evidence cite is a public URL or a file shipped here.

Every path into this repository that README.md, docs/, the contract and example READMEs, the package's
code (the quirk table included) and the shipped cassettes' `source` fields name must exist, and nothing
may point at a folder beside the checkout (the reference material the captures were first read from).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("fixtures", "docs", "emulator", "examples", "tests", "contract", "scripts", "js", "bench",
             "constraints", "report")
# A path from the repository root, e.g. fixtures/observations/err-3040-capacity.json or emulator/server/.
REPO_PATH = re.compile(r"(?<![\w/.~$-])((?:" + "|".join(TOP_LEVEL) + r")/[\w.*/-]*[\w*/])")
# Names of material that is not part of the repository.
OUTSIDE = re.compile(r"real-responses|shared/reference|\.\./shared|workers-ai-api\.md|reference §|/work/")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
# Paths the docs name that are not files of this repository, each for a reason.
NOT_SHIPPED = {
    "tests/cassettes": "the reader's own project: where its cassettes go",
    "tests/test_x.py": "the reader's own project: a test file given to pytest",
    "bench/results": "written by a bench run, git-ignored",
    "fixtures/recorded/contract.json": "written by recording the contract suite against the real API",
}


def citing_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "contract" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted(ROOT.glob("examples/*/README.md")) + sorted(ROOT.glob("js/*/README.md"))
    files += sorted((ROOT / "emulator").rglob("*.py"))
    files += sorted((ROOT / "fixtures" / "real").glob("*.json"))
    files += [ROOT / "fixtures" / "observations" / "INDEX.md", ROOT / "contract" / "build_fixtures.py"]
    return files


def cited_text(path: Path) -> str:
    text = path.read_text("utf-8")
    if path.suffix == ".md":
        # Fenced blocks are commands and files of the reader's own project (tests/test_chat.py …).
        text = FENCE.sub("", text)
    return text


def exists(cited: str, base: Path = ROOT) -> bool:
    """Whether `cited` names a file here, from the root or (in an example's README) from its folder."""
    if cited.rstrip("/") in NOT_SHIPPED:
        return True
    for folder in {ROOT, base}:
        if any(folder.glob(cited)) if "*" in cited else (folder / cited).exists():
            return True
    return False


@pytest.mark.parametrize("path", citing_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_repository_path_exists(path: Path) -> None:
    text = cited_text(path)
    missing = sorted({m.group(1).rstrip(".") for m in REPO_PATH.finditer(text)
                      if not exists(m.group(1).rstrip("."), path.parent)})
    assert not missing, f"{path.relative_to(ROOT)} cites files this repository does not have: {missing}"
    outside = sorted({text[max(0, m.start() - 30):m.end() + 30].replace("\n", " ")
                      for m in OUTSIDE.finditer(text)})
    assert not outside, f"{path.relative_to(ROOT)} cites material outside the repository: {outside}"


def test_the_checker_finds_a_missing_path_and_an_outside_citation(tmp_path: Path) -> None:
    assert exists("fixtures/observations/INDEX.md") and exists("fixtures/real/*.json")
    text = "see fixtures/observations/no-such-capture.json and ../shared/reference/real-responses/x.json"
    assert [m.group(1) for m in REPO_PATH.finditer(text)] == ["fixtures/observations/no-such-capture.json"]
    assert not exists("fixtures/observations/no-such-capture.json")
    assert OUTSIDE.search(text)


def test_the_quirks_command_cites_only_shipped_evidence() -> None:
    from emulator.docgen import quirks

    text = quirks.markdown() + quirks.table()
    cited = {m.group(1).rstrip(".") for m in REPO_PATH.finditer(text)}
    assert cited and all(exists(c) for c in cited), sorted(c for c in cited if not exists(c))
    assert not OUTSIDE.search(text)
