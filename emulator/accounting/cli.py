"""Neuron accounting commands: `usage` (read a server's ledger), `cost` (one call), `cost-table`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import click

from emulator.accounting.costs import RULE_UNITS, TABLES, estimate, image_usage, replace_block
from emulator.accounting.ledger import Ledger, Plan, UsageReport
from emulator.accounting.pricing import FREE_DAILY_NEURONS, load_prices
from emulator.call import Usage
from emulator.settings import ENV_PREFIX

LEDGER_FILE = "ledger.sqlite3"


def _ledger_path(data_dir: Path | None, ledger: Path | None) -> Path:
    if data_dir is not None and ledger is not None:
        raise click.UsageError("give --data-dir or --ledger, not both")
    path = ledger if ledger is not None else (data_dir / LEDGER_FILE if data_dir is not None else None)
    if path is None:
        raise click.UsageError(f"say which server: --port PORT (a running one), --data-dir DIR (as given to "
                               f"`serve`, printed in its banner), --ledger PATH, or set {ENV_PREFIX}DATA_DIR")
    if not path.is_file():
        raise click.UsageError(f"no ledger at {path} (start `workers-ai-emulator serve --data-dir …` first)")
    return path


def _money(value: float) -> str:
    # A ledger figure is a multiple of 0.01 neurons ($0.00000011): 8 decimals show every one exactly.
    return f"${value:,.8f}"


def _neurons(value: float) -> str:
    return f"{value:,.2f}"


class Grouping(StrEnum):
    """What the rows of the usage table are."""

    MODEL = "model"
    SURFACE = "surface"  # the API the calls arrived on (REST run/, OpenAI /v1, the env.AI binding …)


def _model_rows(report: UsageReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("model", "requests", "errors", "neurons", "dollars", "refused", "price",
                                    "overage")]
    for m in report.models:
        refused = ", ".join(f"{count}×{code}" for code, count in sorted(m.refusals.items())) or "0"
        billed = report.plan is Plan.PAID and m.overage_neurons > 0
        overage = f"{_neurons(m.overage_neurons)} ({_money(m.overage_dollars)})" if billed else "—"
        rows.append((m.model, str(m.requests), str(m.errors), _neurons(m.neurons), _money(m.dollars), refused,
                     "estimated" if m.estimated else "listed", overage))
    rows.append(("TOTAL", str(report.requests), str(report.errors), _neurons(report.neurons),
                 _money(report.dollars), str(report.refused), "estimated" if report.estimated else "", ""))
    return rows


def _surface_rows(report: UsageReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("surface", "requests", "errors", "neurons", "dollars")]
    for s in report.surfaces:
        rows.append((s.surface, str(s.requests), str(s.errors), _neurons(s.neurons), _money(s.dollars)))
    rows.append(("TOTAL", str(report.requests), str(report.errors), _neurons(report.neurons),
                 _money(report.dollars)))
    return rows


def render_usage(report: UsageReport, days: list[date], by: Grouping = Grouping.MODEL) -> str:
    rows = _surface_rows(report) if by is Grouping.SURFACE else _model_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {1, 2, 3, 4}
    out = [f"Workers AI usage on {report.day.isoformat()} (UTC) — account {report.account or 'all'}, "
           f"{report.plan.value} plan, {_neurons(report.daily_neurons)} free neurons a day"]
    for i, row in enumerate(rows):
        if i == len(rows) - 1:
            out.append("  ".join("-" * w for w in widths))
        out.append("  ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in
                             enumerate(zip(row, widths, strict=True))).rstrip())
    out.append("")
    out.append(f"free allowance left: {_neurons(report.free_allowance_left)} neurons "
               f"(resets {report.resets_at.strftime('%Y-%m-%d %H:%M UTC')})")
    if report.plan is Plan.PAID:
        out.append(f"overage billed (paid plan): {_neurons(report.overage_neurons)} neurons = "
                   f"{_money(report.overage_dollars)}")
    else:
        out.append("free plan: nothing is billed; calls after the allowance are refused with 4006")
    if report.estimated:
        out.append("'estimated': no published price for that model; priced like a sibling "
                   "(`workers-ai-emulator cost MODEL` names it)")
    if report.day not in days and days:
        recent = ", ".join(d.isoformat() for d in days[-10:])
        out.append(f"no usage on that day; days in the ledger: {recent}")
    return "\n".join(out) + "\n"


def remote_report(host: str, port: int, token: str | None, day: datetime | None = None,
                  account: str | None = None) -> UsageReport:
    """The usage report of a running server, from its control plane."""
    from emulator.client import EmulatorClient, EmulatorError

    client = EmulatorClient(f"http://{host}:{port}", token=token, timeout=10)
    try:
        raw = client.usage(day=day.date().isoformat() if day else None, account=account)
    except EmulatorError as exc:
        raise click.ClickException(f"the server on port {port} refused the usage report: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"no emulator answers on {host}:{port} ({exc})") from None
    return UsageReport.model_validate(raw)


@click.command()
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), help="UTC day (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print the usage report as JSON.")
@click.option("--port", type=int, help="Ask the server running on this port (its control plane).")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --port: the server's address.")
@click.option("--token", envvar=ENV_PREFIX + "TOKEN", help="With --port: the server's --token, if any.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), envvar=ENV_PREFIX + "DATA_DIR",
              help="The --data-dir the server runs (or ran) with (its banner prints it).")
@click.option("--ledger", type=click.Path(path_type=Path, dir_okay=False), help="The ledger file itself.")
@click.option("--account", help="Only this account id (default: all accounts).")
@click.option("--plan", type=click.Choice([p.value for p in Plan]),
              help="Report as this plan (default: the plan the server ran with).")
@click.option("--daily-neurons", type=float, help="Allowance to report against (default: the server's).")
@click.option("--max-neurons", type=float, metavar="N",
              help="Exit with status 1 when the day's neurons exceed N (a CI budget).")
@click.option("--by", type=click.Choice([g.value for g in Grouping]), default=Grouping.MODEL.value,
              show_default=True, help="One row per model, or per surface the calls arrived on (REST run/, "
              "OpenAI /v1, gateway compat, env.AI binding, realtime).")
def usage(day: datetime | None, as_json: bool, port: int | None, host: str, token: str | None,
          data_dir: Path | None, ledger: Path | None, account: str | None, plan: str | None,
          daily_neurons: float | None, max_neurons: float | None, by: str) -> None:
    """Per-model requests, errors, neurons and dollars of one UTC day, from a running server (--port)
    or a ledger on disk (--data-dir); --max-neurons fails a CI job over budget."""
    if port is not None:
        if data_dir is not None or ledger is not None:
            raise click.UsageError("give --port, or --data-dir / --ledger, not both")
        report = remote_report(host, port, token, day, account)
        days: list[date] = []
    else:
        path = _ledger_path(data_dir, ledger)
        with Ledger(path) as book:
            stored = book.stored_settings()
            book.plan = Plan(plan or stored.get("plan", Plan.FREE.value))
            book.daily_neurons = daily_neurons if daily_neurons is not None else float(
                stored.get("daily_neurons", FREE_DAILY_NEURONS))
            report = book.usage(account=account, day=day.date() if day else datetime.now(UTC).date())
            days = book.days()
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(render_usage(report, days, Grouping(by)), nl=False)
    if over_budget(report, max_neurons):
        raise SystemExit(1)


def over_budget(report: UsageReport, max_neurons: float | None) -> bool:
    """Whether the report spent more than `max_neurons` (saying so on stderr); never without a budget."""
    if max_neurons is None or report.neurons <= max_neurons:
        return False
    click.echo(f"over budget: {report.neurons:,.2f} neurons spent, more than --max-neurons "
               f"{max_neurons:,.2f}", err=True)
    return True


def _usage_from(model: str, rule: str, opts: dict[str, Any]) -> Usage:
    width, height = opts["width"], opts["height"]
    if rule in ("tiles_steps", "flux2_dev", "flux2_klein_4b", "megapixels"):
        if not width or not height:
            raise click.UsageError(f"{model} is priced per image size: give --width and --height")
        u = image_usage(width, height, opts["steps"] or 0)
        if rule == "flux2_dev" and not opts["steps"]:
            raise click.UsageError(f"{model} is priced per tile and step: give --steps")
        return u
    return Usage(input_tokens=opts["input_tokens"] or 0, output_tokens=opts["output_tokens"] or 0,
                 cached_input_tokens=opts["cached_input_tokens"] or 0, images=opts["images"] or 0,
                 audio_seconds=opts["audio_seconds"] or 0.0, characters=opts["characters"] or 0)


def _nonneg(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value < 0:
        raise click.BadParameter("must not be negative")
    return value


@click.command()
@click.argument("model")
@click.option("--input-tokens", type=int, callback=_nonneg, help="Prompt / input tokens per call.")
@click.option("--output-tokens", type=int, callback=_nonneg, help="Generated tokens per call.")
@click.option("--cached-input-tokens", type=int, callback=_nonneg, help="Cached part of the input.")
@click.option("--audio-seconds", type=float, callback=_nonneg, help="Seconds of audio per call.")
@click.option("--width", type=int, callback=_nonneg, help="Image width in pixels.")
@click.option("--height", type=int, callback=_nonneg, help="Image height in pixels.")
@click.option("--steps", type=int, callback=_nonneg, help="Diffusion steps.")
@click.option("--characters", type=int, callback=_nonneg, help="Characters of text to speak (TTS).")
@click.option("--images", type=int, callback=_nonneg, help="Input images per call (classification).")
@click.option("--allowance", type=float, default=FREE_DAILY_NEURONS, show_default=True,
              help="Neurons to count calls against (the free daily allowance).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def cost(model: str, allowance: float, as_json: bool, **opts: Any) -> None:
    """Neurons and dollars of one call of MODEL, and how many such calls fit in the free allowance."""
    book = load_prices()
    if not book.has_rule(model):
        from emulator.catalog import load_catalog  # the catalog is read only for an unpriced name

        if load_catalog().get(model) is None:
            raise click.UsageError(
                f"unknown model {model!r} (`workers-ai-emulator cost-table --prices` lists the priced models)"
            )
    rule = book.rule(model).rule
    # --cached-input-tokens splits the input of a token-priced model.
    applies = {*RULE_UNITS[rule], *(("--cached-input-tokens",) if rule == "tokens" else ())}
    ignored = [f"--{name.replace('_', '-')}" for name, value in opts.items()
               if value is not None and f"--{name.replace('_', '-')}" not in applies]
    if ignored:
        raise click.UsageError(f"{model} is priced by {rule} ({', '.join(RULE_UNITS[rule])}): "
                               f"{', '.join(ignored)} does not change its price")
    usage_ = _usage_from(model, rule, opts)
    e = estimate(model, usage_, prices=book, allowance=allowance)
    if as_json:
        click.echo(json.dumps({**e.as_dict(), "allowance": allowance}, indent=2))
        return
    marker = "  (ESTIMATED price: no published price for this model)" if e.estimated else ""
    lines = [f"{model}: priced by {rule} ({e.source}){marker}",
             f"  neurons per call   {e.neurons:,.4f}  (cf-ai-neurons: {e.header})",
             f"  dollars per call   ${e.dollars:.8f}  at $0.011 / 1,000 neurons beyond the free allowance"]
    if e.calls_per_allowance is None:
        units = ", ".join(RULE_UNITS[rule])
        lines.append(f"  this call costs nothing; the options this model is priced by: {units}")
    else:
        lines.append(f"  calls per {allowance:,.0f} neurons  {e.calls_per_allowance:,}")
    click.echo("\n".join(lines))


@click.command("cost-table")
@click.option("--free-neurons", "which", flag_value="free-neurons", default=True,
              help="What 10,000 free neurons buy, against the guide's rule of thumb (README).")
@click.option("--prices", "which", flag_value="prices", help="Every model's price rule (docs/costs.md).")
@click.option("--write", "write", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Replace the table's generated block in this file instead of printing it.")
def cost_table(which: str, write: Path | None) -> None:
    """Print a generated cost table (Markdown), or refresh it in README.md / docs/costs.md."""
    if write is None:
        click.echo(TABLES[which](), nl=False)
        return
    try:
        changed = replace_block(write, which)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{write}: {'updated' if changed else 'already current'}", err=True)


COMMANDS = (usage, cost, cost_table)
