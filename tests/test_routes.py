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


@pytest.mark.parametrize("form", NOT_EMULATED, ids=lambda form: f"{form.method} {form.documented}")
def test_paths_not_emulated_answer_the_edges_routing_error(form: PathForm) -> None:
    with pytest.raises(CFError) as raised:
        parse(form.method, form.probe)
    assert raised.value.code == 7000


def test_the_derived_sets() -> None:
    openai_kinds = {Kind.CHAT, Kind.EMBEDDINGS, Kind.RESPONSES, Kind.COMPAT_CHAT, Kind.COMPAT_EMBEDDINGS}
    assert openai_kinds == OPENAI_ERROR_KINDS
    assert {Kind.RUN} | openai_kinds == CACHEABLE_KINDS
    assert SURFACE_BY_KIND[Kind.RUN] == "native" and SURFACE_BY_KIND[Kind.COMPAT_EMBEDDINGS] == "embeddings"
    assert SURFACE_BY_KIND[Kind.MODELS_SEARCH] == "models_search"
