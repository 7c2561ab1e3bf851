"""The package's layout as a checked fact: no import cycles, and subsystems used in one direction only.

Every import counts, wherever it is written (module top, inside a function, under TYPE_CHECKING): a
function-level import must not be a way to hide a cycle. docs/architecture.md describes the layers.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "emulator"

# Each part of the package and the parts it may import (besides itself); the shared vocabulary
# (`call`, `errors`, `settings`, `quirks`, `limits`, `lru`, `gil`, the version) is open to everyone.
SHARED = {"call", "errors", "settings", "quirks", "limits", "lru", "gil", "lifeline", "__init__"}
MAY_USE: dict[str, set[str]] = {
    "validation": set(),
    "catalog": {"validation"},
    "fakes": {"validation"},
    "tasks": {"catalog", "fakes"},
    "finetunes": {"catalog"},
    "markdown": set(),
    "realtime": {"catalog", "fakes"},
    "cassettes": set(),
    "accounting": {"catalog", "client"},  # `usage --port` asks a running server through the client
    "backends": {"catalog", "fakes", "tasks", "cassettes"},
    # Only server/app.py, the composition root, mounts the control plane.
    "server": {"catalog", "fakes", "tasks", "cassettes", "accounting", "backends",
               "finetunes", "markdown", "realtime", "control"},
    "control": {"catalog", "fakes", "tasks", "cassettes", "accounting", "backends", "server"},
    "launch": {"server", "cassettes"},
    "docgen": {"server", "cassettes", "catalog", "pytest_plugin"},
    "client": set(),
    "pytest_plugin": {"launch", "client", "accounting"},
    "cli": {"launch", "docgen", "accounting", "server", "catalog"},  # `catalog sync`, `--extra-model`
    "__main__": {"cli"},
}
# The one module of `server` allowed to import `control`: it builds the app and mounts the routes.
COMPOSITION_ROOT = "emulator.server.app"


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every `emulator` module `name` imports, counting the packages a dotted import initialises."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                targets.add(sub if sub in MODULES else module)
    # Importing a.b.c runs the packages a.b's __init__ first, unless the importer already is inside it.
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    found = set()
    for target in targets:
        if not target.startswith("emulator"):
            continue
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(2, len(parts)))
        found -= own
        found.add(target)
    found.discard(name)
    return {t for t in found if t in MODULES}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _part(module: str) -> str:
    return module.split(".")[1] if module != "emulator" else "__init__"


def test_the_package_has_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_part_is_listed() -> None:
    parts = {_part(m) for m in MODULES} - SHARED
    assert parts == set(MAY_USE), "add the new part to MAY_USE and to docs/architecture.md"


def test_parts_are_used_in_one_direction() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        part = _part(module)
        for target in targets:
            used = _part(target)
            if part in SHARED or used in SHARED or used == part:
                continue
            if used == "control" and part == "server" and module != COMPOSITION_ROOT:
                wrong.append(f"{module} -> {target} (the pipeline reaches control through server/state.py)")
            elif used not in MAY_USE[part]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_docs_architecture_names_every_part_and_real_files() -> None:
    text = (ROOT.parent / "docs" / "architecture.md").read_text()
    for part in MAY_USE:
        shown = f"`{part}.py`" if (ROOT / f"{part}.py").exists() else f"`{part}/`"
        assert shown in text, f"docs/architecture.md does not describe {shown}"
    for cited in re.findall(r"`(emulator/[\w/.]+)`", text):
        assert (ROOT.parent / cited).exists(), cited
    packages = "|".join(part for part in MAY_USE if (ROOT / part).is_dir())
    for cited in re.findall(rf"`((?:{packages})/[\w.]+\.py)", text):
        assert (ROOT / cited).exists(), cited
