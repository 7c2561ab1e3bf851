"""README.md and docs/ snippets run as written (host swapped); docs/reference.md matches the code."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import click
import click.testing
import pytest

from emulator.cli import main
from emulator.docgen.reference import DIRECT_ENV, UNDESCRIBED, generate
from tests.node_projects import npm_ci
from tests.serving import free_port, serve

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
HOST = "http://127.0.0.1:8787"
BIN = str(Path(sys.executable).parent)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(path: Path, lang: str | None = None) -> list[str]:
    return [body for kind, body in FENCE.findall(path.read_text()) if lang is None or kind == lang]


def shell_env() -> dict[str, str]:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}


def run(cmd: list[str], cwd: Path, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=shell_env(), **kw
    )  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(data_dir=tmp_path_factory.mktemp("docs-server")) as (base, _):
        yield base


def write_wav(path: Path, seconds: float = 1.0) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x00\x10" * int(16000 * seconds))


# --- README ------------------------------------------------------------------------------------------

SETUP_SERVE = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/workers-ai-emulator serve"
SETUP_TEST = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"


def test_readme_starts_with_the_two_setup_commands() -> None:
    first, second = blocks(README)[:2]
    assert (first.strip(), second.strip()) == (SETUP_SERVE, SETUP_TEST)


def test_readme_test_command_is_the_line_ci_runs() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert SETUP_TEST in ci_lines, ".ci/run must run the README's install-and-test line verbatim"


def test_readme_serve_command_starts_the_server(tmp_path: Path) -> None:
    # The part after the install: the console script `serve` (its banner names the base URL).
    port = free_port()
    cmd = SETUP_SERVE.split("&& ")[-1].replace(".venv/bin/", BIN + "/").split()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=shell_env(),
    )
    try:
        assert proc.stdout is not None
        assert f"listening on http://127.0.0.1:{port}" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_tour_runs(server: str, tmp_path: Path) -> None:
    tour = next(b for b in blocks(README, "sh") if "curl" in b).replace(HOST, server)
    write_wav(tmp_path / "speech.wav")
    prelude = [line for line in tour.splitlines() if re.match(r"^[A-Z]+=", line)]
    steps = re.split(r"^# .*\n", tour, flags=re.M)[1:]
    names = re.findall(r"^# (.*)$", tour, flags=re.M)
    assert len(steps) == len(names) >= 7
    for name, step in zip(names, steps, strict=True):
        out = run(["bash", "-c", "set -e\n" + "\n".join(prelude) + "\n" + step], tmp_path)
        assert out.returncode == 0, (name, out.stderr)
        text = out.stdout
        if "image" in name:
            assert (tmp_path / "lighthouse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        elif "streamed" in name:
            assert text.rstrip().endswith("data: [DONE]"), text[-200:]
        elif "cost" in name:
            assert '"neurons"' in text, text[:300]
        else:
            assert '"success":true' in text.replace(" ", ""), (name, text[:300])
    transcript = run(
        [
            "bash",
            "-c",
            "\n".join(prelude) + "\n" + steps[names.index(next(n for n in names if "transcript" in n))],
        ],
        tmp_path,
    ).stdout
    assert '"text"' in transcript


def test_readme_links_every_doc_and_example() -> None:
    text = README.read_text()
    for page in ("clients", "ci", "recording", "costs", "reference", "quirks", "openai-compatible", "errors"):
        assert f"(docs/{page}.md)" in text
    for target in re.findall(r"\]\(((?:docs|examples)/[^)#]*)", text):
        assert (ROOT / target).exists(), target


def test_errors_doc_lists_every_error_kind() -> None:
    from emulator.errors import CATALOGUE

    text = (DOCS / "errors.md").read_text()
    for kind, spec in CATALOGUE.items():
        assert f"| `{kind}` | {spec.code} | {spec.status} |" in text, f"docs/errors.md lacks {kind}"


def test_docs_links_resolve() -> None:
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\((\.\./[^)#]*|[a-z-]+\.md)", page.read_text()):
            assert (page.parent / target).resolve().exists(), (page.name, target)


# --- every `workers-ai-emulator …` line in the docs is a valid command line --------------------------


def command_lines() -> list[tuple[str, str]]:
    found = []
    for path in [README, *sorted(DOCS.glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]:
        for body in blocks(path):
            for line in body.splitlines():
                m = re.search(r"(?:^|run: |\.venv/bin/|&& )workers-ai-emulator ([^&#|>]*)", line.strip())
                if m:
                    found.append((path.name, m.group(1).strip().rstrip("\\").strip()))
    return found


@pytest.mark.parametrize(("page", "args"), command_lines())
def test_documented_command_line_parses(page: str, args: str) -> None:
    words = shlex.split(args.replace("…", "x").replace("<", "").replace(">", ""))
    command = main.get_command(click.Context(main), words[0])
    assert command is not None, f"{page}: no command {words[0]!r}"
    try:
        command.make_context(words[0], words[1:], resilient_parsing=False)
    except click.exceptions.Exit:
        pass
    except click.UsageError as exc:
        pytest.fail(f"{page}: `workers-ai-emulator {args}`: {exc.format_message()}")


# --- docs/clients.md -----------------------------------------------------------------------------------


def _needs(snippet: str) -> list[str]:
    mods = re.findall(r"^(?:from|import) ([\w.]+)", snippet, flags=re.M)
    return [m for m in mods if find_spec(m.split(".")[0]) is None]


@pytest.mark.parametrize("index", range(len(blocks(DOCS / "clients.md", "python"))))
def test_clients_python_snippet(server: str, tmp_path: Path, index: int) -> None:
    snippet = blocks(DOCS / "clients.md", "python")[index]
    missing = _needs(snippet)
    assert not missing, f"every snippet's package is a pinned test dependency; missing: {missing}"
    out = run([sys.executable, "-c", snippet.replace(HOST, server)], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("index", range(len(blocks(DOCS / "clients.md", "sh"))))
def test_clients_shell_snippet(server: str, tmp_path: Path, index: int) -> None:
    snippet = blocks(DOCS / "clients.md", "sh")[index].replace(HOST, server)
    out = run(["bash", "-ec", snippet], tmp_path)
    assert out.returncode == 0, out.stderr
    assert '"success":true' in out.stdout.replace(" ", "") or '"choices"' in out.stdout, out.stdout[:300]


def _node_modules(project: Path) -> Path:
    npm_ci(project, marker=".package-lock.json", timeout=300)
    return project / "node_modules"


@pytest.mark.parametrize(
    ("package", "project"),
    [("openai", "examples/node-openai"), ("workers-ai-provider", "examples/node-openai"),
     ("miniflare", "contract/workers")],
)
def test_clients_node_snippet(server: str, tmp_path: Path, package: str, project: str) -> None:
    snippet = next(b for b in blocks(DOCS / "clients.md", "js") if f'from "{package}"' in b)
    (tmp_path / "node_modules").symlink_to(_node_modules(ROOT / project))
    (tmp_path / "snippet.mjs").write_text(snippet.replace(HOST, server))
    out = run(["node", "snippet.mjs"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()
    if package == "miniflare":
        assert "translated_text" in out.stdout


# --- docs/ci.md -------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("index", range(len(blocks(DOCS / "ci.md", "sh"))))
def test_ci_shell_block(tmp_path: Path, index: int) -> None:
    port = str(free_port())
    snippet = blocks(DOCS / "ci.md", "sh")[index].replace("8787", port)
    out = run(["bash", "-ec", snippet], tmp_path, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"status":"ok"' in out.stdout.replace(" ", "")
    if "--background" in snippet:
        assert "stopped pid" in out.stdout and "TOTAL" in out.stdout
        assert not (Path(os.environ.get("TMPDIR", "/tmp")) / f"workers-ai-emulator-{port}.pid").exists()


def test_ci_pytest_block(tmp_path: Path) -> None:
    (tmp_path / "test_snippet.py").write_text(blocks(DOCS / "ci.md", "python")[0])
    # Only our plugin (by module name): the other installed pytest plugins cost seconds to import.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "emulator.pytest_plugin"]
    out = subprocess.run(
        [*cmd, "test_snippet.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**shell_env(), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert "3 passed" in out.stdout


def test_ci_github_actions_job_is_valid_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load(blocks(DOCS / "ci.md", "yaml")[0])["jobs"]["test"]
    uses = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
    start, report = uses["<owner>/workers-ai-emulator"], uses["<owner>/workers-ai-emulator/report"]
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert set(start["with"]) <= set(action["inputs"])
    report_action = yaml.safe_load((ROOT / "report" / "action.yml").read_text())
    assert set(report["with"]) <= set(report_action["inputs"]) and report["if"] == "always()"
    env = next(step["env"] for step in job["steps"] if step.get("name") == "Test")
    outputs = {v.split("outputs.")[1].rstrip(" }") for v in env.values() if "outputs." in v}
    assert outputs <= set(action["outputs"])


def test_top_level_help_spells_out_commands_and_sets_maintainer_ones_apart() -> None:
    out = click.testing.CliRunner().invoke(main, ["--help"], terminal_width=200).output
    user, maintainer = out.split("Maintainer commands:")
    assert "catalog sync" in user and "cost-table" in maintainer and "docs-reference" in maintainer
    assert "cost-table" not in user
    assert "..." not in out.split("Commands:")[1]  # no description cut short


def test_background_refuses_a_second_server_on_the_same_pid_file(tmp_path: Path) -> None:
    pid_file = tmp_path / "emu.pid"
    start = [
        "workers-ai-emulator",
        "serve",
        "--background",
        "--port",
        "0",
        "--pid-file",
        str(pid_file),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    assert run(start, tmp_path).returncode == 0
    try:
        again = run(start, tmp_path)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        assert run(["workers-ai-emulator", "stop", "--pid-file", str(pid_file)], tmp_path).returncode == 0
    stale = run(["workers-ai-emulator", "stop", "--pid-file", str(pid_file)], tmp_path)
    assert stale.returncode == 1 and "no pid file" in stale.stderr


def test_background_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    out = run(
        [
            "workers-ai-emulator",
            "serve",
            "--background",
            "--port",
            "0",
            "--quirk",
            "no-such-quirk=off",
            "--pid-file",
            str(tmp_path / "x.pid"),
        ],
        tmp_path,
    )
    assert out.returncode == 1 and "exited with status" in out.stderr
    assert not (tmp_path / "x.pid").exists()


# --- docs/reference.md and --help ------------------------------------------------------------------


def test_reference_md_is_generated_from_the_code() -> None:
    text = generate(main)
    assert (DOCS / "reference.md").read_text() == text, (
        "docs/reference.md is stale: run `workers-ai-emulator docs-reference -o docs/reference.md`"
    )
    assert UNDESCRIBED not in text, "describe the new route or surface in emulator/docgen/reference.py"


def test_reference_lists_every_environment_variable_the_code_reads() -> None:
    read = set()
    for path in (ROOT / "emulator").rglob("*.py"):
        read |= set(re.findall(r"os\.environ(?:\.get)?[\[(]\"([A-Z_]+)\"", path.read_text()))
    assert read <= set(DIRECT_ENV), read - set(DIRECT_ENV)


def _walk(group: click.Group) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield name, command
        if isinstance(command, click.Group):
            yield from ((f"{name} {n}", c) for n, c in _walk(command))


def test_every_command_and_option_has_help() -> None:
    assert main.help
    for name, command in _walk(main):
        assert command.help and command.help.strip(), f"`{name}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"`{name} {param.opts[0]}` has no help string"


def test_help_runs_for_every_command() -> None:
    runner = click.testing.CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0
    for name, _ in _walk(main):
        assert name in top.output
        result = runner.invoke(main, [*name.split(), "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name
