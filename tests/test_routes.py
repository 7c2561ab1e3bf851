"""The route table (emulator/server/routes.py) agrees with the router and covers every kind of route."""

from __future__ import annotations

import pytest

from emulator.errors import CFError
from emulator.server.paths import Kind
from emulator.server.router import parse
from emulator.server.routes import (
    CACHEABLE_KINDS,
    HANDLERS,
    NOT_EMULATED,
    OPENAI_ERROR_KINDS,
    ROUTES,
    SURFACE_BY_KIND,
    PathForm,
)


def test_every_kind_has_exactly_one_entry() -> None:
    kinds = [spec.kind for spec in ROUTES]
    assert sorted(kinds) == sorted(Kind) and len(set(kinds)) == len(kinds)
    assert set(HANDLERS) == set(Kind) == set(SURFACE_BY_KIND)


@pytest.mark.parametrize(
    ("form", "kind"), [(form, spec.kind) for spec in ROUTES for form in spec.forms],
    ids=lambda value: value.probe if isinstance(value, PathForm) else "",
)
def test_each_documented_form_routes_to_its_entry(form: PathForm, kind: Kind) -> None:
    assert parse(form.method, form.probe).kind is kind


# Paths under …/ai/ the table does not hold: Cloudflare's endpoints the emulator does not serve
# (NOT_EMULATED, listed in docs/reference.md) and paths Cloudflare has no endpoint at.
_ACCOUNT_AI = "/client/v4/accounts/0123456789abcdef0123456789abcdef/ai"
NOT_ROUTED = [(form.method, form.probe) for form in NOT_EMULATED] + [
    ("GET", f"{_ACCOUNT_AI}/not-an-endpoint"), ("POST", f"{_ACCOUNT_AI}/models/not-an-endpoint"),
    ("GET", f"{_ACCOUNT_AI}/authors/search/more"),
]


@pytest.mark.parametrize(("method", "path"), NOT_ROUTED, ids=lambda value: str(value))
def test_paths_not_in_the_table_answer_the_edges_routing_error(method: str, path: str) -> None:
    with pytest.raises(CFError) as raised:
        parse(method, path)
    assert raised.value.code == 7000


def test_the_derived_sets() -> None:
    openai_kinds = {Kind.CHAT, Kind.EMBEDDINGS, Kind.RESPONSES, Kind.COMPAT_CHAT, Kind.COMPAT_EMBEDDINGS}
    assert openai_kinds == OPENAI_ERROR_KINDS
    assert {Kind.RUN} | openai_kinds == CACHEABLE_KINDS
    assert SURFACE_BY_KIND[Kind.RUN] == "native" and SURFACE_BY_KIND[Kind.COMPAT_EMBEDDINGS] == "embeddings"
    assert SURFACE_BY_KIND[Kind.MODELS_SEARCH] == "models_search"
