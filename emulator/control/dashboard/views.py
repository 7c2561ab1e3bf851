"""The dashboard page, rendered here from the control plane's own JSON: the whole page on load, and
its parts by name for app.js, which swaps them in every second (it renders nothing itself)."""

from __future__ import annotations

import asyncio
import functools
import hmac
import math
from collections.abc import Callable
from datetime import datetime
from html import escape
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from emulator import __version__
from emulator.control.dashboard.chart import fmt_neurons, hourly_svg
from emulator.control.plane import PLANE, query_day
from emulator.control.scope import SpecError
from emulator.limits import is_number_text
from emulator.server.state import STATE

PREFIX = "/__emulator__"
LATEST = 25  # rows of Latest requests
BODY_SHOWN = 4000  # characters of a request body the detail view prints
WARN_AT = 0.8
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
# Nothing is loaded from anywhere but this server; data: only for image thumbnails.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def authorized(request: web.Request) -> bool:
    """With `--token`, the page takes it as `?token=` (a browser cannot send a header) or Bearer."""
    expected = request.app[STATE].settings.token
    if expected is None:
        return True
    given = request.query.get("token")
    if given is None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        given = value.strip() if scheme.lower() == "bearer" else ""
    return hmac.compare_digest(given.encode(), expected.encode())


@functools.cache
def static_file(name: str) -> bytes:
    return resources.files("emulator.control.dashboard").joinpath("static", name).read_bytes()


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=static_file(name), content_type=STATIC[name],
                        headers={"Cache-Control": "no-cache"})


async def hourly_chart(request: web.Request) -> web.StreamResponse:
    if not authorized(request):
        return web.json_response({"success": False, "error": "the dashboard needs the server's --token"},
                                 status=401)
    ledger = request.app[STATE].ledger
    now = ledger.clock.now()
    try:  # read as GET usage/hourly reads it
        day = query_day(request.query.get("day"), now.date())
    except SpecError as exc:
        return web.json_response({"success": False, "error": str(exc)}, status=400)
    assert day is not None
    hours = ledger.hourly(account=request.query.get("account"), day=day)
    today = day == now.date()
    svg = hourly_svg(hours, now_hour=now.hour if today else None, day="today" if today else day.isoformat())
    return web.Response(text=svg, content_type="image/svg+xml")


async def page(request: web.Request) -> web.StreamResponse:
    if not authorized(request):
        wrong = "token" in request.query
        return _html(_token_prompt(wrong), status=401)
    return _html((await view_of(request)).render())


async def parts(request: web.Request) -> web.StreamResponse:
    """The page's parts as HTML, by name: app.js swaps them into the page it polls."""
    if not authorized(request):
        return web.json_response({"success": False, "error": "the dashboard needs the server's --token"},
                                 status=401)
    view = await view_of(request)
    return web.Response(body=orjson.dumps({"parts": view.parts()}), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def view_of(request: web.Request) -> View:
    """What the page shows for this request's query (`failed`, `request`, `token`)."""
    state = request.app[STATE]
    plane = request.app[PLANE]
    failed_only = request.query.get("failed") == "1"
    status = "error" if failed_only else None
    # The same objects the JSON routes serialise: GET usage, requests, stubs, faults, clock.
    usage = orjson.loads(state.ledger.usage().model_dump_json())
    if plane.stale():
        await plane.catch_up()
    entries, logged = await asyncio.gather(plane.requests(status=status, limit=LATEST),
                                           plane.count(status=status))
    detail = None
    wanted = request.query.get("request", "")
    if is_number_text(wanted):
        detail = await plane.request(int(wanted))
    return View(
        token=request.query.get("token"),
        usage=usage,
        hourly=hourly_svg(state.ledger.hourly(), now_hour=state.ledger.clock.now().hour, standalone=False),
        requests=list(reversed(entries)),
        logged=logged,
        detail=detail,
        wanted=wanted,
        failed_only=failed_only,
        mode=state.settings.mode.value,
        cassette=state.settings.cassette if state.settings.mode.value != "mock" else None,
        clock=plane.clock.describe(),
        stubs=[s.describe() for s in plane.stubs.all()],
        faults=[f.describe() for f in plane.faults.all()],
    )


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                                 "Referrer-Policy": "no-referrer"})


def fmt_dollars(value: float) -> str:
    return f"${value:,.4f}"


def percent(used: float, allowance: float) -> int:
    """Whole percent, rounded down so the page never says 100% before the wall is reached."""
    return math.floor(100 * used / allowance) if allowance > 0 else 0


def level(used: float, allowance: float) -> str:
    if allowance <= 0 or used >= allowance:
        return "full"
    return "warn" if used >= WARN_AT * allowance else "ok"


def refusals_text(refusals: dict[str, int]) -> str:
    return ", ".join(f"{code} × {n}" for code, n in sorted(refusals.items())) or "0"


def source_label(entry: dict[str, Any]) -> str:
    """Where the answer came from; in replay, whether the cassette had it (hit) or not (miss)."""
    if entry.get("faulted") and entry.get("status", 0) >= 400:
        return "fault"
    if entry.get("error_code") == 7404:
        return "miss"
    source = entry.get("source")
    if source is None and entry.get("status", 0) >= 400:
        # Answered before any backend ran: the ledger's wall / plan / rate limit, or input validation.
        return "refused" if entry.get("error_code") in (4006, 5035, 3040) else "rejected"
    if source == "replay":
        return "hit" if 0 < entry.get("status", 0) < 400 else "replay"
    return str(source or "—")


def status_text(entry: dict[str, Any]) -> str:
    status = entry.get("status", 0)
    text = str(status)
    if entry.get("error_code"):
        text += f" · {entry['error_code']}"
    if entry.get("cut"):
        text += " · cut"
    return text


class View:
    """Everything the page shows, rendered to HTML: the whole page, or its parts by name (`parts`),
    which app.js fetches every second and swaps in. The page is drawn here and nowhere else."""

    def __init__(self, *, token: str | None, usage: dict[str, Any], hourly: str,
                 requests: list[dict[str, Any]], logged: int, detail: dict[str, Any] | None, wanted: str,
                 failed_only: bool, mode: str, cassette: str | None, clock: dict[str, Any],
                 stubs: list[dict[str, Any]], faults: list[dict[str, Any]]) -> None:
        self.token, self.usage, self.hourly, self.requests = token, usage, hourly, requests
        self.logged, self.detail, self.wanted, self.failed_only = logged, detail, wanted, failed_only
        self.mode, self.cassette, self.clock, self.stubs, self.faults = mode, cassette, clock, stubs, faults

    def link(self, **query: str) -> str:
        params = {**({"token": self.token} if self.token else {}), **query}
        return escape(f"{PREFIX}/?{urlencode(params)}" if params else f"{PREFIX}/")

    def parts(self) -> dict[str, str]:
        """The inner HTML of every element marked `data-part` on the page."""
        return {
            "meta": self.meta(),
            "today": self.today(),
            "chart": self.chart(),
            "models": self.models(),
            "setup": self.setup(),
            "latest": self.latest(),
            "detail": self.detail_part(),
        }

    def render(self) -> str:
        p = self.parts()
        checked = " checked" if self.failed_only else ""
        toggle = (f'<a id="failed-link" href="{self.link()}">show all calls</a>' if self.failed_only
                  else f'<a id="failed-link" href="{self.link(failed="1")}">show failed calls only</a>')
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Usage · Workers AI emulator</title>
<link rel="stylesheet" href="{PREFIX}/dashboard/app.css">
<script src="{PREFIX}/dashboard/app.js" defer></script>
</head>
<body data-prefix="{PREFIX}">
<header class="top">
<h1>Workers AI emulator <span class="sub">usage dashboard</span></h1>
<p class="meta"><span data-part="meta">{p["meta"]}</span> · <span id="updated">as of page load</span></p>
<p id="live" class="live" role="status" aria-live="polite">Figures as of page load; reload to refresh
 (with JavaScript the page refreshes itself every second).</p>
<button id="reset" class="reset" type="button" hidden>Reset usage, log, stubs and faults</button>
<noscript><p>The reset button needs JavaScript; without it, <code>POST {PREFIX}/reset</code>.</p></noscript>
</header>
<main>
<section class="card today" aria-labelledby="today-h" data-part="today">{p["today"]}</section>
<section class="card chart" aria-labelledby="hourly-h" data-part="chart">{p["chart"]}</section>
<section class="card models" aria-labelledby="models-h" data-part="models">{p["models"]}</section>
<section class="card setup" aria-labelledby="setup-h" data-part="setup">{p["setup"]}</section>
<section class="card latest" aria-labelledby="latest-h">
<div class="filters"><label class="filter" hidden><input type="checkbox" id="failed-only"{checked}>
 failed only</label> <span class="nojs-filter">{toggle}</span></div>
<div data-part="latest">{p["latest"]}</div>
</section>
<section class="card detail" id="detail" aria-labelledby="detail-h" tabindex="-1" data-part="detail">\
{p["detail"]}</section>
</main>
</body>
</html>
"""

    def meta(self) -> str:
        mode = f"{self.mode} (cassette {self.cassette})" if self.cassette else self.mode
        if self.clock.get("real", True):
            clock = "real clock"
        else:
            clock = f"clock frozen at {str(self.clock['now'])[:19].replace('T', ' ')} UTC"
        return (f'Mode <strong id="mode">{escape(mode)}</strong>'
                f' · plan <strong id="plan">{escape(self.usage["plan"])}</strong>'
                f' · <span id="clock">{escape(clock)}</span> · v{escape(__version__)}')

    def today(self) -> str:
        u = self.usage
        allowance = float(u["daily_neurons"])
        used = allowance - float(u["free_allowance_left"]) if allowance else float(u["neurons"])
        lvl = level(used, allowance)
        walls = sum(int(m["refusals"].get("4006", 0)) for m in u["models"])
        resets = datetime.fromisoformat(u["resets_at"])
        return f"""<h2 id="today-h">Today, UTC day <span id="day">{escape(u["day"])}</span></h2>
<div id="wall" class="wall {lvl}">
<p class="big"><strong id="neurons">{fmt_neurons(float(u["neurons"]))}</strong> neurons used
 of <span id="allowance">{fmt_neurons(allowance)}</span> a day
 (<span id="pct">{percent(used, allowance)}%</span>)</p>
<progress id="bar" max="{allowance}" value="{min(used, allowance)}" aria-label="Daily allowance used"
 aria-valuetext="{escape(fmt_neurons(used))} of {escape(fmt_neurons(allowance))} neurons"></progress>
<p id="wall-note" class="note">{escape(wall_note(u, used, walls))}</p>
</div>
<dl class="facts">
<div><dt>Cost</dt><dd><span id="dollars">{fmt_dollars(float(u["dollars"]))}</span>
 <small>at $0.011 / 1,000 neurons</small></dd></div>
<div><dt>Charged calls</dt><dd id="requests-total">{u["requests"]}</dd></div>
<div><dt>Charged errors</dt><dd id="errors-total">{u["errors"]}</dd></div>
<div><dt>Refused with 4006</dt><dd id="walls">{walls}</dd></div>
<div><dt>Plan</dt><dd id="plan-text">{escape(plan_text(u))}</dd></div>
<div><dt>Allowance resets</dt><dd><time id="resets" datetime="{escape(u["resets_at"])}">
{resets:%Y-%m-%d %H:%M} UTC</time></dd></div>
</dl>
<p class="hint">Charged calls, errors and refusals are the totals of the per-model table; every call,
 charged or not, is in Latest requests.</p>"""

    def chart(self) -> str:
        return f"""<h2 id="hourly-h">Neurons per hour (UTC)</h2>
<figure id="hourly">{self.hourly}</figure>
<p class="hint">The darker bar is the current hour; hover a bar for its neurons.</p>"""

    def models(self) -> str:
        u = self.usage
        rows = "".join(model_row(m) for m in u["models"]) or (
            '<tr class="empty"><td colspan="7">No calls yet today.</td></tr>')
        refusals: dict[str, int] = {}
        for m in u["models"]:
            for code, n in m["refusals"].items():
                refusals[code] = refusals.get(code, 0) + int(n)
        total = (f'<tr id="models-total"><th scope="row">Total</th><td class="num">{u["requests"]}</td>'
                 f'<td class="num">{fmt_neurons(float(u["neurons"]))}</td>'
                 f'<td class="num">{fmt_dollars(float(u["dollars"]))}</td><td class="num">{u["errors"]}</td>'
                 f"<td>{escape(refusals_text(refusals))}</td><td></td></tr>")
        return f"""<table id="models">
<caption id="models-h">Per model, today</caption>
<thead><tr><th scope="col">Model</th><th scope="col" class="num">Requests</th>
<th scope="col" class="num">Neurons</th><th scope="col" class="num">Dollars</th>
<th scope="col" class="num">Errors</th><th scope="col">Refused</th><th scope="col">Price</th></tr></thead>
<tbody>{rows}</tbody>
<tfoot>{total}</tfoot>
</table>
<p class="legend"><abbr title="estimated">est.</abbr> = the model has no published price; its neurons are
 the emulator's estimate. Requests = charged calls; Errors = charged calls that answered an error.
 Refused = calls answered 4006 (daily wall), 5035 (paid plan only) or 3040 (rate limit) before running.
 Calls rejected earlier (bad input, injected faults) are listed under Latest requests.</p>"""

    def setup(self) -> str:
        active_stubs = [s for s in self.stubs if not s.get("exhausted")]
        used_stubs = [s for s in self.stubs if s.get("exhausted")]
        active_faults = [f for f in self.faults if not f.get("exhausted")]
        used_faults = [f for f in self.faults if f.get("exhausted")]
        return f"""<h2 id="setup-h">Stubs and faults</h2>
{item_list("stubs", "Active stubs", active_stubs, stub_text)}
{item_list("stubs-used", "Used-up stubs", used_stubs, stub_text, hide_empty=True)}
{item_list("faults", "Active faults", active_faults, fault_text)}
{item_list("faults-used", "Used-up faults (they fire no more)", used_faults, fault_text, hide_empty=True)}"""

    def latest(self) -> str:
        rows = "".join(self.request_row(e) for e in self.requests) or (
            '<tr class="empty"><td colspan="8">No requests yet.</td></tr>')
        kind = "failed calls" if self.failed_only else "calls"
        return f"""<table id="requests">
<caption id="latest-h">Latest requests <span class="hint" id="latest-count">(newest first: showing
 {len(self.requests)} of {self.logged} {kind} in the log)</span></caption>
<thead><tr><th scope="col">Time (UTC)</th><th scope="col">Surface</th><th scope="col">Model</th>
<th scope="col">Status</th><th scope="col" class="num">Neurons</th><th scope="col" class="num">Latency</th>
<th scope="col">Source</th><th scope="col"><span class="sr-only">Detail</span></th></tr></thead>
<tbody>{rows}</tbody>
</table>"""

    def request_row(self, e: dict[str, Any]) -> str:
        classes = " ".join(c for c, on in (("bad", e["status"] >= 400 or e.get("cut")),
                                           ("selected", str(e["id"]) == self.wanted)) if on)
        return (f'<tr data-id="{e["id"]}"' + (f' class="{classes}"' if classes else "") + ">"
                f'<td>{escape(e["time"][11:19])}</td>'
                f'<td>{escape(e.get("surface") or "—")}</td>'
                f'<td class="model">{escape(e.get("model") or e["path"])}</td>'
                f'<td class="status">{escape(status_text(e))}</td>'
                f'<td class="num">{fmt_neurons(e["neurons"])}</td>'
                f'<td class="num">{e["latency_ms"]:.1f} ms</td><td>{escape(source_label(e))}</td>'
                f'<td><a class="open" href="{self.link(request=str(e["id"]))}">details'
                f'<span class="sr-only"> of request {e["id"]}</span></a></td></tr>')

    def detail_part(self) -> str:
        if self.detail is None:
            body = ('<p class="hint">Pick “details” on a request to see its body and answer.</p>'
                    if not self.wanted else
                    f'<p>Request {escape(self.wanted)} is no longer in the log.</p>')
            title = "Request detail"
        else:
            body, title = detail_html(self.detail), f"Request {self.detail['id']}"
        return f"""<h2 id="detail-h">{escape(title)}</h2>
<div id="detail-body">{body}</div>"""


def item_list(list_id: str, title: str, items: list[dict[str, Any]], text: Callable[[dict[str, Any]], str],
              *, hide_empty: bool = False) -> str:
    """A heading with the number of items it lists, then the list ("none" when empty)."""
    if hide_empty and not items:
        return ""
    lis = "".join(f"<li>{escape(text(item))}</li>" for item in items) or "<li>none</li>"
    return f'<h3>{escape(title)}: {len(items)}</h3>\n<ul id="{list_id}">{lis}</ul>'


def wall_note(u: dict[str, Any], used: float, walls: int) -> str:
    allowance = float(u["daily_neurons"])
    left = max(0.0, allowance - used)
    if u["plan"] == "paid":
        if used >= allowance:
            return (f"Beyond the daily allowance: {fmt_neurons(float(u['overage_neurons']))} neurons of "
                    f"overage, {fmt_dollars(float(u['overage_dollars']))} billed.")
        return f"{fmt_neurons(left)} neurons left before overage billing."
    if used >= allowance:
        return (f"Daily allowance used up: calls are refused with error 4006 until the reset "
                f"({walls} refused so far).")
    if used >= WARN_AT * allowance:
        return f"Near the daily wall: {fmt_neurons(left)} neurons left, then calls fail with 4006."
    return f"{fmt_neurons(left)} neurons left today."


def plan_text(u: dict[str, Any]) -> str:
    allowance = fmt_neurons(float(u["daily_neurons"]))
    if u["plan"] == "paid":
        return f"paid: {allowance} neurons a day included, then billed"
    return f"free: {allowance} neurons a day, then 4006"


def model_row(m: dict[str, Any]) -> str:
    refused = refusals_text(m["refusals"])
    price = '<abbr title="estimated price">est.</abbr>' if m["estimated"] else "published"
    return (f'<tr><th scope="row" class="model">{escape(m["model"])}</th>'
            f'<td class="num">{m["requests"]}</td><td class="num">{fmt_neurons(m["neurons"])}</td>'
            f'<td class="num">{fmt_dollars(m["dollars"])}</td>'
            f'<td class="num">{m["errors"]}</td><td>{escape(refused)}</td><td>{price}</td></tr>')


def _scope(item: dict[str, Any]) -> str:
    bits = [f"{k}={item[k]}" for k in ("model", "surface", "account", "prompt") if item.get(k)]
    if item.get("body"):
        bits.append("body=" + orjson.dumps(item["body"]).decode()[:80])
    return " ".join(bits) or "every call"


def stub_text(s: dict[str, Any]) -> str:
    answers = []
    for a in s.get("results", []):
        if "error" in a:
            answers.append(f"error {a['error']}")
        elif "text" in a:
            answers.append(f'text "{str(a["text"])[:60]}"')
        else:
            answers.append("result " + orjson.dumps(a.get("result")).decode()[:60])
    label = s["id"] + (f" ({s['name']})" if s.get("name") else "")
    times = f", {s['times']} left" if s.get("times") is not None else ""
    return f"{label}: {_scope(s)} → {' then '.join(answers)} · {s.get('calls', 0)} calls{times}"


def fault_text(f: dict[str, Any]) -> str:
    label = f["id"] + (f" ({f['name']})" if f.get("name") else "")
    kind = str(f.get("error") or f["kind"]) + (f" {f['code']}/{f['status']}" if f.get("code") else "")
    if isinstance(f.get("latency_ms"), (int, float)):
        kind += f" {f['latency_ms']:g} ms"
    trigger = next((f"{k}={f[k]}" for k in ("nth", "every", "probability") if f.get(k) is not None), "always")
    if f.get("times") is not None:
        trigger += f", at most {f['times']} times"
    fired = f"fired {f.get('fired', 0)} of {f.get('calls', 0)} calls"
    return f"{label}: {kind} on {_scope(f)}, {trigger} · {fired}"


def detail_html(e: dict[str, Any]) -> str:
    facts = [
        ("Call", f"{e['method']} {e['path']}"),
        ("Time", e["time"].replace("T", " ")[:23] + " UTC"),
        ("Surface", e.get("surface") or "—"),
        ("Model", e.get("model") or "—"),
        ("Status", status_text(e)),
        ("Neurons", fmt_neurons(e["neurons"])),
        ("Latency", f"{e['latency_ms']:.1f} ms"),
        ("Source", source_label(e)),
        ("Request id", e.get("request_id") or "—"),
    ]
    if e.get("stub_id"):
        facts.append(("Stub", e["stub_id"]))
    if e.get("fault_ids"):
        facts.append(("Faults", ", ".join(e["fault_ids"])))
    dl = "".join(f'<div class="{"wide" if k == "Call" else ""}"><dt>{escape(k)}</dt>'
                 f"<dd>{escape(str(v))}</dd></div>" for k, v in facts)
    body = e.get("body")
    body_text = "(empty)" if body is None else orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    if len(body_text) > BODY_SHOWN:
        body_text = body_text[:BODY_SHOWN] + "\n… (truncated)"
    return (f'<dl class="facts small">{dl}</dl>'
            f'<h3>Request body</h3><pre class="body">{escape(body_text)}</pre>'
            f"<h3>Response</h3>{response_html(e.get('response'))}")


def response_html(r: dict[str, Any] | None) -> str:
    if not r:
        return "<p>No response summary (the connection was cut before an answer).</p>"
    out = [f'<p class="hint">{escape(r.get("content_type") or "")}'
           + (f", {r['bytes']:,} bytes" if r.get("bytes") is not None else "") + "</p>"]
    if r.get("kind") == "stream":
        out.append("<p>Streamed answer (server-sent events); its text is not kept in the log.</p>")
    if r.get("kind") == "websocket":
        out.append(f'<p class="websocket">WebSocket session: {r.get("messages_in", 0)} messages in, '
                   f'{r.get("messages_out", 0)} out{", cut by a fault" if r.get("cut") else ""}</p>')
    for err in r.get("errors") or []:
        out.append(f'<p class="error-line"><strong>Error {escape(str(err.get("code")))}</strong>: '
                   f"{escape(str(err.get('message')))}</p>")
    if r.get("text") is not None:
        more = " …" if r.get("truncated") else ""
        out.append(f'<blockquote class="text">{escape(r["text"])}{more}</blockquote>')
    if r.get("thumbnail"):
        src = escape(r["thumbnail"])
        out.append(f'<img class="thumb" src="{src}" alt="Thumbnail of the generated image">')
    elif r.get("kind") == "image":
        out.append("<p>Image (no thumbnail kept)</p>")
    if r.get("audio_seconds") is not None:
        out.append(f'<p class="audio">{r["audio_seconds"]:.2f} s of audio</p>')
    if r.get("vectors"):
        n, d = r["vectors"]
        out.append(f"<p>{n} vector{'s' if n != 1 else ''} × {d} dimensions</p>")
    if r.get("json"):
        out.append(f'<pre class="body">{escape(r["json"])}</pre>')
    return "".join(out)


def _token_prompt(wrong: bool) -> str:
    message = ("That token is not the server's --token." if wrong
               else "This server's control plane is protected by --token.")
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Token needed · Workers AI emulator</title>
<link rel="stylesheet" href="{PREFIX}/dashboard/app.css"></head>
<body><main class="prompt"><h1>Workers AI emulator</h1>
<p role="alert">{escape(message)}</p>
<form method="get" action="{PREFIX}/">
<label for="token">Token</label> <input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Open the dashboard</button>
</form></main></body></html>
"""


def install(app: web.Application) -> None:
    """Serve the page and its assets under the control plane (called by `control.install`)."""
    app.router.add_get(f"{PREFIX}/", page)
    app.router.add_get(PREFIX, _redirect)
    app.router.add_get(f"{PREFIX}/usage/hourly.svg", hourly_chart)
    app.router.add_get(f"{PREFIX}/dashboard/parts", parts)  # before the assets' {name}
    app.router.add_get(f"{PREFIX}/dashboard/{{name}}", asset)


async def _redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/" + (f"?{request.query_string}" if request.query_string else ""))
