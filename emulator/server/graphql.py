"""`POST /client/v4/graphql`: the Workers AI slice of Cloudflare's GraphQL Analytics API, from the ledger.

Answers the query shape dashboards and scripts use to read Workers AI usage (dataset
`aiInferenceAdaptiveGroups`, which https://developers.cloudflare.com/workers-ai/platform/pricing/ points to):

    viewer { accounts(filter: {accountTag: "…"}) {
        aiInferenceAdaptiveGroups(limit: 100, filter: {date_geq: "…", date_leq: "…"},
                                  orderBy: [sum_totalNeurons_DESC]) {
            sum { totalNeurons } count dimensions { modelId date datetimeHour } } } }

This is a small parser for that shape (operations, variables, aliases, arguments), not a GraphQL
engine. As on Cloudflare's API (analytics/graphql-api/errors), a query the emulator cannot answer
gets HTTP 200 with `{"data": null, "errors": [{message, path, extensions{timestamp}}]}`, and a
successful answer carries `"errors": null`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from emulator.limits import read_body
from emulator.server.paths import Route
from emulator.server.render import json_response
from emulator.server.state import ServerState

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
GROUP_DIMENSIONS = frozenset({"modelId", "date", "datetimeHour", "datetimeMinute", "datetime"})
SUM_FIELDS = frozenset({"totalNeurons"})
GROUP_FIELDS = frozenset({"sum", "count", "dimensions"})
DATE_FILTERS: dict[str, Callable[[Any, Any], bool]] = {
    "": lambda a, b: a == b,
    "_geq": lambda a, b: a >= b,
    "_leq": lambda a, b: a <= b,
    "_gt": lambda a, b: a > b,
    "_lt": lambda a, b: a < b,
}


class GraphQLError(Exception):
    def __init__(self, message: str, path: list[str | int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path or []


# ---------------------------------------------------------------------------------------------
# Parsing

_TOKEN = re.compile(r"""
    (?P<ws>[\s,\ufeff]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<var>\$[_A-Za-z][_0-9A-Za-z]*)
  | (?P<punct>\.\.\.|[{}()\[\]:!=@])
""", re.VERBOSE)


@dataclass(slots=True)
class Field:
    name: str
    alias: str
    args: dict[str, Any] = field(default_factory=dict)
    selections: list[Field] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Var:
    name: str


@dataclass(frozen=True, slots=True)
class Enum:
    name: str


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise GraphQLError(f"syntax error: unexpected character {text[pos]!r} at offset {pos}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group()))
    return tokens


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tk, tv = self.peek()
        if (value is not None and tv != value) or (kind is not None and tk != kind) or tk == "eof":
            want = value or kind or "token"
            raise GraphQLError(f"syntax error: expected {want}, found {tv or 'end of query'!r}")
        self.i += 1
        return tv

    def document(self) -> tuple[list[Field], dict[str, Any]]:
        """The one operation's selections and its variable defaults."""
        defaults: dict[str, Any] = {}
        kind, value = self.peek()
        if kind == "name":
            if value != "query":
                raise GraphQLError(f"only queries are supported, not {value!r}")
            self.take()
            if self.peek()[0] == "name":
                self.take()
            if self.peek()[1] == "(":
                defaults = self.variable_definitions()
        selections = self.selection_set()
        if self.peek()[0] != "eof":
            raise GraphQLError("only one operation per request is supported (fragments are not)")
        return selections, defaults

    def variable_definitions(self) -> dict[str, Any]:
        defaults: dict[str, Any] = {}
        self.take("(")
        while self.peek()[1] != ")":
            name = self.take(kind="var")[1:]
            self.take(":")
            self.type_ref()
            if self.peek()[1] == "=":
                self.take()
                defaults[name] = self.value()
        self.take(")")
        return defaults

    def type_ref(self) -> None:
        if self.peek()[1] == "[":
            self.take()
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        if self.peek()[1] == "!":
            self.take()

    def selection_set(self) -> list[Field]:
        self.take("{")
        fields: list[Field] = []
        while self.peek()[1] != "}":
            if self.peek()[1] == "...":
                raise GraphQLError("fragments are not supported by the emulator")
            name = self.take(kind="name")
            alias = name
            if self.peek()[1] == ":":
                self.take()
                name = self.take(kind="name")
            f = Field(name, alias)
            if self.peek()[1] == "(":
                self.take()
                while self.peek()[1] != ")":
                    arg = self.take(kind="name")
                    self.take(":")
                    f.args[arg] = self.value()
                self.take(")")
            if self.peek()[1] == "{":
                f.selections = self.selection_set()
            fields.append(f)
        self.take("}")
        if not fields:
            raise GraphQLError("syntax error: empty selection set")
        return fields

    def value(self) -> Any:
        kind, tv = self.peek()
        if kind == "var":
            self.take()
            return Var(tv[1:])
        if kind == "string":
            self.take()
            return orjson.loads(tv)
        if kind == "number":
            self.take()
            return float(tv) if any(c in tv for c in ".eE") else int(tv)
        if kind == "name":
            self.take()
            return {"true": True, "false": False, "null": None}.get(tv, Enum(tv))
        if tv == "[":
            self.take()
            items = []
            while self.peek()[1] != "]":
                items.append(self.value())
            self.take("]")
            return items
        if tv == "{":
            self.take()
            obj: dict[str, Any] = {}
            while self.peek()[1] != "}":
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        raise GraphQLError(f"syntax error: unexpected {tv or 'end of query'!r}")


def resolve(value: Any, variables: dict[str, Any]) -> Any:
    """Substitute variables; enums become their names (orderBy: [sum_totalNeurons_DESC])."""
    if isinstance(value, Var):
        return variables.get(value.name)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# Execution

@dataclass(frozen=True, slots=True)
class Row:
    ts: datetime
    model: str
    neurons: float

    def dimension(self, name: str) -> str:
        if name == "modelId":
            return self.model
        if name == "date":
            return self.ts.date().isoformat()
        if name == "datetimeHour":
            return self.ts.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        if name == "datetimeMinute":
            return self.ts.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.ts.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_fields(fields: list[Field], allowed: frozenset[str], path: list[str | int], what: str) -> None:
    for f in fields:
        if f.name not in allowed:
            raise GraphQLError(f"unknown field \"{f.name}\" on type \"{what}\"", [*path, f.alias])


def _parse_when(name: str, value: Any, path: list[str | int]) -> date | datetime:
    try:
        if name.startswith("date") and not name.startswith("datetime"):
            return date.fromisoformat(str(value))
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        raise GraphQLError(f"error parsing args: invalid value {value!r} for filter {name}", path) from None


def _all_of(checks: list[Callable[[Row], bool]]) -> Callable[[Row], bool]:
    return lambda row: all(check(row) for check in checks)


def _model_is(model: Any) -> Callable[[Row], bool]:
    return lambda row: row.model == model


def _model_in(models: frozenset[Any]) -> Callable[[Row], bool]:
    return lambda row: row.model in models


def _when_is(compare: Callable[[Any, Any], bool], when: date | datetime) -> Callable[[Row], bool]:
    """A date filter compares datetimes with the row's timestamp and dates with its day."""
    if isinstance(when, datetime):
        return lambda row: compare(row.ts, when)
    return lambda row: compare(row.ts.date(), when)


def _sort_value(name: str, pair: tuple[dict[str, Any], dict[str, Any]]) -> Any:
    return pair[0].get(name, "")


def _row_filter(filt: Any, path: list[str | int]) -> Callable[[Row], bool]:
    if filt is None:
        return lambda row: True
    if not isinstance(filt, dict):
        raise GraphQLError("error parsing args: filter must be an object", path)
    checks: list[Callable[[Row], bool]] = []
    for key, value in filt.items():
        if key == "AND" and isinstance(value, list):
            subs = [_row_filter(v, path) for v in value]
            checks.append(_all_of(subs))
            continue
        if key == "modelId":
            checks.append(_model_is(value))
            continue
        if key == "modelId_in" and isinstance(value, list):
            checks.append(_model_in(frozenset(value)))
            continue
        base, _, op = key.partition("_")
        suffix = f"_{op}" if op else ""
        if base not in ("date", "datetime", "datetimeHour", "datetimeMinute") or suffix not in DATE_FILTERS:
            raise GraphQLError(f"error parsing args: unknown filter field \"{key}\"", path)
        when = _parse_when(base, value, path)
        compare = DATE_FILTERS[suffix]
        checks.append(_when_is(compare, when))
    return _all_of(checks)


def _groups(state: ServerState, account: str, node: Field, path: list[str | int]) -> list[dict[str, Any]]:
    _check_fields(node.selections, GROUP_FIELDS, path, "AiInferenceAdaptiveGroups")
    limit = node.args.get("limit", DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_LIMIT:
        raise GraphQLError(f"limit must be an integer between 1 and {MAX_LIMIT}", path)
    keep = _row_filter(node.args.get("filter"), path)
    rows = [Row(ts, model, neurons) for ts, model, neurons in state.ledger.call_rows(account)]
    rows = [r for r in rows if keep(r)]
    dims: list[str] = []
    for f in node.selections:
        if f.name == "dimensions":
            _check_fields(f.selections, GROUP_DIMENSIONS, [*path, f.alias],
                          "AiInferenceAdaptiveGroupsDimensions")
            dims += [d.name for d in f.selections if d.name not in dims]
        if f.name == "sum":
            _check_fields(f.selections, SUM_FIELDS, [*path, f.alias], "AiInferenceAdaptiveGroupsSum")
    buckets: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        buckets.setdefault(tuple(row.dimension(d) for d in dims), []).append(row)
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for key, members in buckets.items():
        facts = {"count": len(members), "sum_totalNeurons": round(sum(r.neurons for r in members), 6),
                 **dict(zip(dims, key, strict=True))}
        item: dict[str, Any] = {}
        for f in node.selections:
            if f.name == "count":
                item[f.alias] = facts["count"]
            elif f.name == "sum":
                item[f.alias] = {s.alias: facts["sum_totalNeurons"] for s in f.selections}
            else:
                item[f.alias] = {d.alias: facts[d.name] for d in f.selections}
        out.append((facts, item))
    for order in reversed(_order_by(node.args.get("orderBy"), path)):
        name, descending = order
        out.sort(key=functools.partial(_sort_value, name), reverse=descending)
    return [item for _, item in out[:limit]]


def _order_by(value: Any, path: list[str | int]) -> list[tuple[str, bool]]:
    items = value if isinstance(value, list) else ([] if value is None else [value])
    orders = []
    for item in items:
        text = str(item)
        base, _, direction = text.rpartition("_")
        if direction not in ("ASC", "DESC") or base not in ("count", "sum_totalNeurons", *GROUP_DIMENSIONS):
            raise GraphQLError(f"error parsing args: unknown orderBy value \"{text}\"", path)
        orders.append((base, direction == "DESC"))
    return orders


def _account_tags(filt: Any, path: list[str | int]) -> list[str]:
    if isinstance(filt, dict):
        if isinstance(filt.get("accountTag"), str):
            return [filt["accountTag"]]
        if isinstance(filt.get("accountTag_in"), list):
            return [str(t) for t in filt["accountTag_in"]]
    raise GraphQLError("accounts requires filter: {accountTag: \"<account id>\"}", path)


def execute_query(state: ServerState, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    selections, defaults = Parser(query).document()
    variables = {**defaults, **variables}
    data: dict[str, Any] = {}
    for top in selections:
        if top.name != "viewer":
            raise GraphQLError(f"unknown field \"{top.name}\" on type \"Query\"", [top.alias])
        viewer: dict[str, Any] = {}
        for acc in top.selections:
            path: list[str | int] = [top.alias, acc.alias]
            if acc.name != "accounts":
                raise GraphQLError(f"unknown field \"{acc.name}\" on type \"viewer\"", path)
            args = {k: resolve(v, variables) for k, v in acc.args.items()}
            accounts = []
            for index, tag in enumerate(_account_tags(args.get("filter"), path)):
                node_out: dict[str, Any] = {}
                for node in acc.selections:
                    node_path: list[str | int] = [*path, index, node.alias]
                    if node.name != "aiInferenceAdaptiveGroups":
                        raise GraphQLError(f"unknown field \"{node.name}\" on type \"account\"", node_path)
                    node_args = {k: resolve(v, variables) for k, v in node.args.items()}
                    resolved = Field(node.name, node.alias, node_args, node.selections)
                    node_out[node.alias] = _groups(state, tag, resolved, node_path)
                accounts.append(node_out)
            viewer[acc.alias] = accounts
        data[top.alias] = viewer
    return data


def _error_body(state: ServerState, error: GraphQLError) -> dict[str, Any]:
    stamp = state.clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"data": None, "errors": [{"message": error.message, "path": [str(p) for p in error.path] or None,
                                      "extensions": {"timestamp": stamp}}]}


def _bad_request(state: ServerState, message: str) -> web.Response:
    return json_response(_error_body(state, GraphQLError(message)), status=400)


async def handle_graphql(request: web.Request, route: Route, state: ServerState, request_id: str
                         ) -> web.StreamResponse:
    raw = await read_body(request)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _bad_request(state, "failed to parse request body as JSON")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return _bad_request(state, "request body needs a \"query\" string")
    variables = payload.get("variables") or {}
    if not isinstance(variables, dict):
        return _bad_request(state, "\"variables\" must be an object")
    try:
        data = execute_query(state, payload["query"], variables)
    except GraphQLError as error:
        return json_response(_error_body(state, error))
    return json_response({"data": data, "errors": None})
