"""`POST /client/v4/graphql`: the Workers AI slice of Cloudflare's GraphQL Analytics API, from the ledger.

Answers the query shape dashboards and scripts use to read Workers AI usage (dataset
`aiInferenceAdaptiveGroups`, which https://developers.cloudflare.com/workers-ai/platform/pricing/ points to):

    viewer { accounts(filter: {accountTag: "…"}) {
        aiInferenceAdaptiveGroups(limit: 100, filter: {date_geq: "…", date_leq: "…"},
                                  orderBy: [sum_totalNeurons_DESC]) {
            sum { totalNeurons } count dimensions { modelId date datetimeHour } } } }

graphql-core parses the query; the emulator answers that shape (one query operation, variables,
aliases, arguments), without a schema or a GraphQL engine. As on Cloudflare's API
(analytics/graphql-api/errors), a query the emulator cannot answer gets HTTP 200 with
`{"data": null, "errors": [{message, path, extensions{timestamp}}]}`, and a
successful answer carries `"errors": null`.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from emulator.limits import MAX_NUMBER_DIGITS, read_body
from emulator.server.paths import Route
from emulator.server.render import json_response
from emulator.server.state import ServerState


def _lazy_module(name: str) -> ModuleType:
    """`name`, executed on its first attribute access (the importlib documentation's LazyLoader recipe)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


# graphql-core takes ~0.15-0.2 s to import, a tenth of `serve`'s cold start, and only this analytics
# endpoint uses it: it loads on the first GraphQL query.
if TYPE_CHECKING:
    import graphql as gql
else:
    gql = _lazy_module("graphql")

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

# Queries are parsed by graphql-core (the reference implementation's Python port) into its AST,
# then read into the small `Field` tree below; only the subset the emulator answers is accepted.
# Parsing the usual usage query (variables, filters, orderBy, 3 groups) takes about 1.7 ms with
# graphql-core against 0.45 ms for a hand-written tokenizer (measured on the 2-core test machine
# under load): a cost an analytics endpoint polled by a dashboard can carry.
# `MAX_TOKENS` bounds the parser's work whatever the body; a value nested deeper than Python's
# recursion allows is answered as a syntax error (graphql-core 3.3.2 refuses it itself, older
# versions in the allowed range hit RecursionError).
MAX_TOKENS = 5_000


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


def parse_document(text: str) -> tuple[list[Field], dict[str, Any]]:
    """The one operation's selections and its variable defaults."""
    try:
        document = gql.parse(text, no_location=True, max_tokens=MAX_TOKENS)
    except gql.GraphQLSyntaxError as error:
        raise GraphQLError(f"syntax error: {error.description}") from None
    except RecursionError:
        raise GraphQLError("syntax error: the query is nested too deeply") from None
    operations = document.definitions
    if len(operations) != 1 or not isinstance(operations[0], gql.OperationDefinitionNode):
        raise GraphQLError("only one operation per request is supported (fragments are not)")
    operation = operations[0]
    if operation.operation is not gql.OperationType.QUERY:
        raise GraphQLError(f"only queries are supported, not {operation.operation.value!r}")
    defaults = {
        definition.variable.name.value: _value(definition.default_value)
        for definition in operation.variable_definitions or ()
        if definition.default_value is not None
    }
    return _selections(operation.selection_set), defaults


def _selections(selection_set: gql.SelectionSetNode | None) -> list[Field]:
    fields: list[Field] = []
    for node in selection_set.selections if selection_set else ():
        if not isinstance(node, gql.FieldNode):
            raise GraphQLError("fragments are not supported by the emulator")
        if node.directives:
            raise GraphQLError("directives are not supported by the emulator")
        name = node.name.value
        args = {arg.name.value: _value(arg.value) for arg in node.arguments or ()}
        alias = node.alias.value if node.alias else name
        fields.append(Field(name, alias, args, _selections(node.selection_set)))
    return fields


def _value(node: gql.ValueNode) -> Any:
    """A literal argument value: variables stay `Var`, enum values become `Enum`."""
    if isinstance(node, gql.VariableNode):
        return Var(node.name.value)
    if isinstance(node, gql.IntValueNode):
        if len(node.value.removeprefix("-")) > MAX_NUMBER_DIGITS:  # int() refuses 4,300 digits
            raise GraphQLError(f"integer {node.value[:24]}… has more than {MAX_NUMBER_DIGITS} digits")
        return int(node.value)
    if isinstance(node, gql.FloatValueNode):
        return float(node.value)
    if isinstance(node, gql.StringValueNode | gql.BooleanValueNode):
        return node.value
    if isinstance(node, gql.EnumValueNode):
        return Enum(node.value)
    if isinstance(node, gql.ListValueNode):
        return [_value(item) for item in node.values]
    if isinstance(node, gql.ObjectValueNode):
        return {item.name.value: _value(item.value) for item in node.fields}
    return None  # NullValueNode


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
    selections, defaults = parse_document(query)
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
