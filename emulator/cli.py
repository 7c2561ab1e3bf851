"""The `workers-ai-emulator` command line: serve, and the tools around a running or stopped server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from emulator.accounting.cli import COMMANDS as ACCOUNTING_COMMANDS
from emulator.accounting.cli import over_budget, remote_report, render_usage
from emulator.docgen import quirks as quirks_doc
from emulator.launch import detach, eventloop
from emulator.launch.banner import RECORDING_MODES, banner, cassette_path, interactions_in, shutdown_summary
from emulator.launch.workers import serve_workers
from emulator.quirks import parse_quirk_flags
from emulator.settings import ENV_PREFIX, EventLoop, Mode, Plan, Settings


def env(name: str) -> str:
    return ENV_PREFIX + name


# Commands that keep this repository's generated files current: listed apart from the user's commands.
MAINTAINER_COMMANDS = frozenset({"cost-table", "docs-reference"})


class HelpGroup(click.Group):
    """Top-level help: every command (subcommands spelled out, e.g. `catalog sync`) with its whole first
    sentence, the user's commands first and the maintainers' apart."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        user: list[tuple[str, str]] = []
        maintainer: list[tuple[str, str]] = []
        for name, command in _spelled_out(self, ctx):
            if command.hidden:
                continue
            row = (name, command.get_short_help_str(limit=1_000))
            (maintainer if name.split()[0] in MAINTAINER_COMMANDS else user).append(row)
        for title, rows in (("Commands", user), ("Maintainer commands", maintainer)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _spelled_out(group: click.Group, ctx: click.Context, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None:
            continue
        if isinstance(command, click.Group):
            found += _spelled_out(command, ctx, f"{prefix}{name} ")
        else:
            found.append((prefix + name, command))
    return found


@click.group(
    cls=HelpGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="workers-ai-emulator")
def main() -> None:
    """A local, deterministic emulator of the Cloudflare Workers AI REST API."""


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar=env("HOST"),
    help="Interface to bind (127.0.0.1 unless told otherwise).",
)
@click.option(
    "--port", default=8787, show_default=True, type=int, envvar=env("PORT"), help="TCP port (0 = any free)."
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    envvar=env("SEED"),
    help="Global seed: the same request and seed give byte-identical answers.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar=env("DATA_DIR"),
    help="Where the ledger and cassettes live (default: a new temporary directory).",
)
@click.option(
    "--token", envvar=env("TOKEN"), help="Accept only this API token (default: any non-empty token)."
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default="mock",
    show_default=True,
    envvar=env("MODE"),
    help="mock fakes, replay cassettes, record/passthrough to the real API.",
)
@click.option(
    "--plan",
    type=click.Choice([p.value for p in Plan]),
    default=Plan.FREE.value,
    show_default=True,
    envvar=env("PLAN"),
    help="free: 4006 after the daily allowance; paid: bill the overage.",
)
@click.option(
    "--daily-neurons",
    type=float,
    default=10_000,
    show_default=True,
    envvar=env("DAILY_NEURONS"),
    help="Daily free neuron allowance.",
)
@click.option(
    "--rate-limits/--no-rate-limits",
    default=False,
    envvar=env("RATE_LIMITS"),
    help="Enforce Cloudflare's per-task requests-per-minute limits.",
)
@click.option(
    "--quirk",
    "quirks",
    multiple=True,
    metavar="NAME=on|off",
    envvar=env("QUIRKS"),
    help="Turn a reproduced Cloudflare quirk off (see `workers-ai-emulator quirks`).",
)
@click.option(
    "--upstream",
    default="https://api.cloudflare.com",
    show_default=True,
    envvar=env("UPSTREAM"),
    help="Real API base for record/passthrough.",
)
@click.option(
    "--cassette",
    default="default",
    show_default=True,
    envvar=env("CASSETTE"),
    help="Cassette name for record/replay.",
)
@click.option(
    "--cassette-dir",
    type=click.Path(path_type=Path),
    envvar=env("CASSETTE_DIR"),
    help="Directory of cassettes (default: <data-dir>/cassettes).",
)
@click.option(
    "--replay-timing",
    type=click.Choice(["fast", "real"]),
    default="fast",
    show_default=True,
    envvar=env("REPLAY_TIMING"),
    help="Replay streams at once or with the recorded timing.",
)
@click.option(
    "--max-upstream-neurons",
    type=float,
    envvar=env("MAX_UPSTREAM_NEURONS"),
    help="Refuse further real calls once this many real neurons were spent in this run.",
)
@click.option(
    "--upstream-gateway",
    default="https://gateway.ai.cloudflare.com",
    show_default=True,
    envvar=env("UPSTREAM_GATEWAY"),
    help="Real AI Gateway base, for /v1/… paths in record/passthrough.",
)
@click.option(
    "--upstream-timeout",
    type=float,
    default=120.0,
    show_default=True,
    envvar=env("UPSTREAM_TIMEOUT"),
    help="Seconds without a byte from the real API before answering 504.",
)
@click.option(
    "--max-upstream-body-bytes",
    type=click.IntRange(min=1),
    default=64 * 1024 * 1024,
    show_default=True,
    envvar=env("MAX_UPSTREAM_BODY_BYTES"),
    help="Record/passthrough: larger real answers are refused (502, code 7413), streams cut, nothing stored.",
)
@click.option(
    "--max-cassette-bytes",
    type=click.IntRange(min=1),
    default=256 * 1024 * 1024,
    show_default=True,
    envvar=env("MAX_CASSETTE_BYTES"),
    help="Replay: a larger cassette file is refused (7404) without being read.",
)
@click.option(
    "--ignore-field",
    "ignore_fields",
    multiple=True,
    metavar="FIELD",
    envvar=env("IGNORE_FIELDS"),
    help="Request-body field replay matching ignores (dotted path, * wildcard); repeatable.",
)
@click.option(
    "--extra-model",
    "extra_models",
    multiple=True,
    metavar="NAME=TASK",
    envvar=env("EXTRA_MODELS"),
    help="Serve a model the catalog lacks, faked like its task's models (@cf/acme/chat-1=text-generation).",
)
@click.option(
    "--catalog-overlay",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=env("CATALOG_OVERLAY"),
    help="Catalog overlay from `catalog sync` (default: <data-dir>/catalog-overlay.json); re-read on change.",
)
@click.option(
    "--no-control-plane",
    is_flag=True,
    envvar=env("NO_CONTROL_PLANE"),
    help="Disable /__emulator__/ (the control plane and dashboard).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar=env("WORKERS"),
    help="Server processes sharing the port (SO_REUSEPORT), the ledger, the cassettes and one control plane.",
)
@click.option(
    "--event-loop",
    type=click.Choice([k.value for k in EventLoop]),
    default=EventLoop.AUTO.value,
    show_default=True,
    envvar=env("EVENT_LOOP"),
    help="auto: uvloop where it is installed (less CPU a call), else asyncio's own loop.",
)
@click.option(
    "--durable-ledger",
    is_flag=True,
    envvar=env("DURABLE_LEDGER"),
    help="Sync every batch of charges to disk (survives an OS crash too; the default survives kill -9 only).",
)
@click.option(
    "--background",
    is_flag=True,
    envvar=env("BACKGROUND"),
    help="Start detached, return once the server answers, and write a pid file (for CI).",
)
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=env("PID_FILE"),
    help="With --background: the pid file (default: <tmp>/workers-ai-emulator-<port>.pid).",
)
@click.option(
    "--ready-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="With --background: seconds to wait for the server to answer.",
)
def serve(
    host: str,
    port: int,
    seed: int,
    data_dir: Path | None,
    token: str | None,
    mode: str,
    plan: str,
    daily_neurons: float,
    rate_limits: bool,
    quirks: tuple[str, ...],
    upstream: str,
    cassette: str,
    cassette_dir: Path | None,
    replay_timing: str,
    max_upstream_neurons: float | None,
    upstream_gateway: str,
    upstream_timeout: float,
    max_upstream_body_bytes: int,
    max_cassette_bytes: int,
    ignore_fields: tuple[str, ...],
    extra_models: tuple[str, ...],
    catalog_overlay: Path | None,
    no_control_plane: bool,
    workers: int,
    event_loop: str,
    durable_ledger: bool,
    background: bool,
    pid_file: Path | None,
    ready_timeout: float,
) -> None:
    """Start the emulator and print the base URLs to paste into each kind of client."""
    if background:
        args = sys.argv[sys.argv.index("serve") + 1 :] if "serve" in sys.argv else []
        detach.start(detach.server_argv(args), pid_file, port, ready_timeout)
        return
    try:
        quirk_map = parse_quirk_flags([q for flag in quirks for q in flag.split(",") if q])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--quirk") from None
    settings = Settings(
        host=host,
        port=port,
        seed=seed,
        data_dir=data_dir,
        token=token,
        mode=Mode(mode),
        plan=Plan(plan),
        daily_neurons=daily_neurons,
        rate_limits=rate_limits,
        quirks=quirk_map,
        upstream=upstream,
        cassette=cassette,
        cassette_dir=cassette_dir,
        replay_timing=replay_timing,
        max_upstream_neurons=max_upstream_neurons,
        control_plane=not no_control_plane,
        upstream_gateway=upstream_gateway,
        upstream_timeout=upstream_timeout,
        max_upstream_body_bytes=max_upstream_body_bytes,
        max_cassette_bytes=max_cassette_bytes,
        ignore_fields=list(ignore_fields),
        extra_models=list(extra_models),
        catalog_overlay=catalog_overlay,
        upstream_token=os.environ.get("CLOUDFLARE_API_TOKEN"),
        upstream_account_id=os.environ.get("CLOUDFLARE_ACCOUNT_ID"),
        workers=workers,
        durable_ledger=durable_ledger,
        event_loop=EventLoop(event_loop),
    )
    _check_extra_models(settings)
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        click.echo(
            f"warning: binding {host} without --token: anyone who can reach this port can use it.", err=True
        )
    try:
        eventloop.chosen(settings.event_loop)  # before any worker forks: a missing uvloop is one line
    except eventloop.EventLoopUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    if workers > 1:
        sys.exit(serve_workers(settings))
    from emulator.launch.lifecycle import ListenError

    try:
        eventloop.run(run_server(settings), settings.event_loop)
    except ListenError as exc:
        raise click.ClickException(str(exc)) from None


def _check_extra_models(settings: Settings) -> None:
    from emulator.catalog import load_catalog
    from emulator.catalog.overlay import extra_model, parse_extra_model

    for spec in settings.extra_models:
        try:
            extra_model(load_catalog(), *parse_extra_model(spec))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--extra-model") from None


async def run_server(settings: Settings) -> None:
    # The server stack is imported only to serve: `--help`, `stop` and the forking parent of
    # `--workers` stay light (launch/workers.py forks before anything heavy is loaded).
    from aiohttp import web

    from emulator.launch.lifecycle import serve_until_stopped

    def announce(runner: web.AppRunner) -> None:
        if settings.port == 0:
            settings.port = runner.addresses[0][1]
        click.echo(banner(settings))
        sys.stdout.flush()

    before = interactions_in(cassette_path(settings)) if settings.mode in RECORDING_MODES else 0
    await serve_until_stopped(settings, announce)
    summary = shutdown_summary(settings, before)
    if summary is not None:
        click.echo(summary)


@main.command("stop")
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=env("PID_FILE"),
    help="The pid file `serve --background` wrote (default: the one for --port).",
)
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=int,
    envvar=env("PORT"),
    help="Find the default pid file of a server started with this --port.",
)
@click.option(
    "--timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
@click.option(
    "--max-neurons",
    type=float,
    metavar="N",
    help="First print the usage table of the server on --port; after stopping it, exit 1 when the "
    "day's neurons exceed N (a CI budget).",
)
@click.option("--token", envvar=env("TOKEN"), help="With --max-neurons: the server's --token, if any.")
def stop_command(pid_file: Path | None, port: int, timeout: float, max_neurons: float | None,
                 token: str | None) -> None:
    """Stop a server started with `serve --background` (SIGTERM, then SIGKILL) and remove its pid file;
    --max-neurons prints its usage first and fails a CI job over budget."""
    report, unread = None, None
    if max_neurons is not None:
        try:
            report = remote_report("127.0.0.1", port, token)
        except click.ClickException as exc:
            unread = exc  # the server is still stopped; the job fails below
        else:
            click.echo(render_usage(report, []), nl=False)
    detach.stop(pid_file or detach.default_pid_file(port), timeout)
    if unread is not None:
        raise click.ClickException(f"{unread.message}; the --max-neurons budget could not be checked")
    if report is not None and over_budget(report, max_neurons):
        raise SystemExit(1)


@main.command("quirks")
@click.option("--markdown", is_flag=True, help="Print docs/quirks.md (generated from the same table).")
@click.option(
    "--quirk",
    "quirks",
    multiple=True,
    metavar="NAME=on|off",
    envvar=env("QUIRKS"),
    help="Show the state these flags would give (as for serve).",
)
def quirks_command(markdown: bool, quirks: tuple[str, ...]) -> None:
    """List the Cloudflare quirks the emulator reproduces, with evidence and off switches."""
    if markdown:
        click.echo(quirks_doc.markdown(), nl=False)
        return
    try:
        overrides = parse_quirk_flags([q for flag in quirks for q in flag.split(",") if q])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--quirk") from None
    click.echo(quirks_doc.table(overrides))


for _command in ACCOUNTING_COMMANDS:
    main.add_command(_command)


@main.group("catalog")
def catalog_group() -> None:
    """Keep the model catalog up to date with Cloudflare's."""


@catalog_group.command("sync")
@click.option("--upstream", default="https://api.cloudflare.com", show_default=True, envvar=env("UPSTREAM"),
              help="Real API base to read the catalog from.")
@click.option("--token", envvar="CLOUDFLARE_API_TOKEN", required=True,
              help="A real API token (default: $CLOUDFLARE_API_TOKEN).")
@click.option("--account-id", envvar="CLOUDFLARE_ACCOUNT_ID", required=True,
              help="The real account id (default: $CLOUDFLARE_ACCOUNT_ID).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar=env("DATA_DIR"),
              help="Write <data-dir>/catalog-overlay.json, which `serve --data-dir` uses.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the overlay here instead (commit it; `serve --catalog-overlay FILE`).")
def catalog_sync(
    upstream: str, token: str, account_id: str, data_dir: Path | None, output: Path | None
) -> None:
    """Pull models/search and every models/schema, write the overlay, print what was added/removed/changed."""
    from emulator.catalog import load_catalog
    from emulator.catalog.overlay import OVERLAY_FILE
    from emulator.catalog.sync import CatalogClient, SyncError, sync

    if (data_dir is None) == (output is None):
        raise click.UsageError("give --data-dir DIR or --output FILE (one of them)")
    path = output if output is not None else data_dir / OVERLAY_FILE  # type: ignore[operator]
    try:
        result = sync(CatalogClient(upstream, account_id, token), load_catalog(), upstream)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(result.overlay.to_json())
    partial.replace(path)  # a running server never reads half a file
    click.echo(result.report(path))


@main.command("docs-reference")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the reference to FILE (docs/reference.md) instead of stdout.",
)
@click.option(
    "--check",
    "check",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Exit 1 if FILE differs from the generated reference.",
)
def docs_reference_command(output: Path | None, check: Path | None) -> None:
    """Print docs/reference.md, generated from the code (commands, options, env vars, routes, cassettes)."""
    # Imported to run: the generator builds an app, which `serve` itself loads only when it serves.
    from emulator.docgen.reference import generate

    text = generate(main)
    if check is not None:
        if check.read_text() != text:
            raise click.ClickException(f"{check} is stale: run workers-ai-emulator docs-reference -o {check}")
        return
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)


@main.command("openapi")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the description to FILE instead of stdout.",
)
def openapi_command(output: Path | None) -> None:
    """Print the OpenAPI 3.1 description of the emulator (also served at /__emulator__/openapi.json)."""
    # Imported to run, as above: the description is built from the server's route table.
    from emulator.server.openapi import spec_bytes

    if output is None:
        click.echo(spec_bytes().decode())
    else:
        output.write_bytes(spec_bytes() + b"\n")


if __name__ == "__main__":
    main()
