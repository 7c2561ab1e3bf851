"""Schemathesis over the emulator's own OpenAPI description: no 5xx, every answer as described.

Default run: every non-`run/` operation plus one model per task, few examples each (CI-sized).
`pytest -m slow tests/test_schemathesis.py` runs every catalog model with more examples;
WORKERS_AI_FUZZ_EXAMPLES overrides the example count of both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from tempfile import TemporaryDirectory

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from emulator.catalog import load_catalog
from emulator.launch.background import BackgroundServer
from emulator.server.openapi import build_spec
from tests.live_server import live_server

AUTH = {"Authorization": "Bearer fuzz-token"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# positive_data_acceptance is left out on purpose: Cloudflare's validator (and ours) accepts a body
# matching several oneOf branches and ignores `format`, so "valid per JSON Schema" and "accepted"
# differ by design (see emulator/validation/schema.py).
QUICK_EXAMPLES = int(os.environ.get("WORKERS_AI_FUZZ_EXAMPLES", "8"))
LONG_EXAMPLES = int(os.environ.get("WORKERS_AI_FUZZ_EXAMPLES", "60"))


def _one_model_per_task() -> set[str]:
    chosen: dict[str, str] = {}
    for model in sorted(load_catalog(), key=lambda m: m.name):
        chosen.setdefault(model.task.name, model.name)
    return set(chosen.values())


SPEC = build_spec()
# The coverage phase enumerates tens of thousands of boundary cases at collection time for the
# catalog's large LLM schemas (minutes); the fuzzing phase with a bounded example count is the budget.
CONFIG = SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}}
)
QUICK_MODELS = _one_model_per_task()
QUICK = schemathesis.openapi.from_dict(
    {
        **SPEC,
        "paths": {
            path: item
            for path, item in SPEC["paths"].items()
            if "/ai/run/" not in path or path.split("/ai/run/", 1)[1] in QUICK_MODELS
        },
    },
    config=CONFIG,
)
FULL = schemathesis.openapi.from_dict(SPEC, config=CONFIG)


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    # Paid plan with a huge allowance: the fuzzer must reach the fakes, not the daily 4006 wall.
    with TemporaryDirectory() as data_dir, live_server(data_dir=data_dir, plan="paid") as live:
        yield live


def _check(case: schemathesis.Case, server: BackgroundServer) -> None:
    case.call_and_validate(base_url=server.base, headers=AUTH, checks=CHECKS, timeout=60)


@QUICK.parametrize()
@settings(
    max_examples=QUICK_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
def test_quick(case: schemathesis.Case, server: BackgroundServer) -> None:
    _check(case, server)


@pytest.mark.slow
@FULL.parametrize()
@settings(max_examples=LONG_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_full(case: schemathesis.Case, server: BackgroundServer) -> None:
    _check(case, server)
