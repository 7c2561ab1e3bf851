"""The requests held by the shipped real-response cassettes, sent to every target, compared with the capture.

- replay: a success must be the recording itself (status, content type, bytes); errors that the emulator's
  edge or validation answers before the cassette is consulted must agree with the capture as below.
- emulator / real: the answer must have the capture's shape: same status, content type, error code and
  wording, envelope key order, JSON skeleton and SSE framing (the text itself is free).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract import checks
from contract.targets import FIXTURES, WRONG_TOKEN, LocalServer, Target, local_target
from emulator.cassettes import Interaction, RecordedResponse, load_cassette

REAL_DIR = FIXTURES / "real"

# Captures the mock emulator does not reproduce yet (found by this suite; reported; OpenAI-surface code).
# Strict: when the emulator is fixed the xfail trips and the entry must go.
# Captures the emulator does not reproduce yet (xfail, strict: a fix makes them fail until removed here).
KNOWN_EMULATOR_DRIFT: dict[str, str] = {}


def cases() -> list[Any]:
    out = []
    for path in sorted(REAL_DIR.glob("*.json")):
        cassette = load_cassette(path.read_bytes(), origin=str(path))
        for i, interaction in enumerate(cassette.interactions):
            out.append(pytest.param(cassette.name, i, interaction, id=f"{Path(cassette.name).name}#{i}"))
    return out


def send(http: httpx.Client, tgt: Target, interaction: Interaction) -> httpx.Response:
    req = interaction.request
    recorded = interaction.response
    account = tgt.account
    if _code(recorded) == 7003:  # the capture's point is the invalid account segment: keep it invalid
        account = _message(recorded).split("/accounts/", 1)[1].split("/", 1)[0]
    path = req.path.replace("{account_id}", account)
    if path.startswith("/v1/"):
        if tgt.gateway_id is None:
            pytest.skip("AI Gateway case: set CLOUDFLARE_GATEWAY_ID to run it against the real gateway")
        parts = path.split("/", 4)  # '', 'v1', account, gateway, rest
        url = tgt.gateway(parts[4])
    else:
        url = tgt.base + path
    token = tgt.token
    if recorded.status == 401 and _code(recorded) == 10000:
        token = WRONG_TOKEN
    headers = {**tgt.auth(token), **req.headers}
    return http.request(
        req.method, url, params=req.query or None, content=req.body.to_bytes(), headers=headers
    )


def _first_error(recorded: RecordedResponse) -> dict[str, Any]:
    if recorded.status < 400:
        return {}
    try:
        body = json.loads(recorded.body_bytes())
    except ValueError:
        return {}
    errors = (body.get("errors") or body.get("error")) if isinstance(body, dict) else None
    return dict(errors[0]) if errors else {}


def _code(recorded: RecordedResponse) -> int | None:
    return _first_error(recorded).get("code")


def _message(recorded: RecordedResponse) -> str:
    return str(_first_error(recorded).get("message", ""))


@pytest.mark.parametrize(("cassette", "index", "interaction"), cases())
def test_capture(
    cassette: str,
    index: int,
    interaction: Interaction,
    target_name: str,
    http: httpx.Client,
    request: pytest.FixtureRequest,
    cassette_server: Callable[[str], LocalServer],
) -> None:
    recorded = interaction.response
    drift = KNOWN_EMULATOR_DRIFT.get(f"{Path(cassette).name}#{index}")
    if drift and target_name == "emulator":
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"known emulator drift: {drift}"))
    if target_name == "replay":
        tgt = local_target("replay", cassette_server(cassette))
        response = send(http, tgt, interaction)
        assert response.status_code == recorded.status, checks.describe(response)
        assert checks.media_type(response) == (recorded.content_type or "").split(";")[0]
        if recorded.status < 400:
            # Errors may be answered by the emulator's own edge/validation before the cassette is consulted
            # (auth, routing, 5006 run first in every mode); those must still agree with the capture below.
            assert response.content == recorded.body_bytes()
    else:
        response = send(http, request.getfixturevalue("target"), interaction)
    agrees_with_capture(recorded, response)
    if recorded.status < 400 and (target_name != "replay" or "cf-ai-req-id" in recorded.headers):
        checks.req_id(response)  # the captures kept no headers; replay can only give back what was recorded


def agrees_with_capture(recorded: RecordedResponse, response: httpx.Response) -> None:
    assert response.status_code == recorded.status, checks.describe(response)
    mt = (recorded.content_type or "").split(";")[0]
    assert checks.media_type(response) == mt, checks.describe(response)
    if mt == "text/event-stream":
        stream_agrees(recorded.body_bytes().decode(), response.text)
        return
    want = json.loads(recorded.body_bytes())
    got = response.json()
    if recorded.status >= 400:
        error_agrees(want, got)
    else:
        checks.skeleton_agrees(want, got)


def error_agrees(want: dict[str, Any], got: dict[str, Any]) -> None:
    """Same error code and wording; the capture's keys present, in the same relative order."""
    key = "errors" if "errors" in want else "error"
    assert got.get(key), got
    assert got[key][0]["code"] == want[key][0]["code"], got
    assert got[key][0]["message"] == want[key][0]["message"], got[key][0]["message"]
    assert got["success"] is False
    shared = [k for k in got if k in want]
    assert shared == list(want), f"key order {list(got)}, capture {list(want)}"
    for k in ("result", "messages"):
        if k in want:
            assert got[k] == want[k], (k, got[k])


def stream_agrees(want_text: str, got_text: str) -> None:
    want, got = checks.sse_events(want_text), checks.sse_events(got_text)
    assert (want[-1] == "[DONE]") == (got[-1] == "[DONE]"), "[DONE] sentinel differs from the capture"
    want_json, got_json = checks.sse_json(want), checks.sse_json(got)
    assert got_json, "no JSON events"

    def objects(events: list[dict[str, Any]]) -> set[Any]:
        return {e.get("object") for e in events}

    assert objects(got_json) == objects(want_json)
    with_usage = [e for e in want_json if e.get("usage")]
    got_usage = [e for e in got_json if e.get("usage")]
    assert bool(with_usage) == bool(got_usage), "usage event presence differs from the capture"
    if with_usage:
        checks.skeleton_agrees({"usage": with_usage[0]["usage"]}, {"usage": got_usage[0]["usage"]})
    if "response" in want_json[0]:  # native /ai/run stream: every event carries `response`
        assert all("response" in e for e in got_json), got_json[:3]
        assert any("p" in e for e in got_json) == any("p" in e for e in want_json), (
            "p padding presence differs"
        )
        return
    checks.skeleton_agrees(want_json[0], got_json[0], "$first_chunk", depth=2)

    def has_tool_calls(events: list[dict[str, Any]]) -> bool:
        return any(c.get("delta", {}).get("tool_calls") for e in events for c in e.get("choices", []))

    assert has_tool_calls(got_json) == has_tool_calls(want_json), "tool_calls deltas differ from the capture"

    # How long the text is decides stop vs length (fake text is not the real text); tool_calls is behaviour.
    def finish_reasons(events: list[dict[str, Any]]) -> set[Any]:
        reasons = {c.get("finish_reason") for e in events for c in e.get("choices", [])} - {None}
        return {"stop" if r == "length" else r for r in reasons}

    finishes, want_finishes = finish_reasons(got_json), finish_reasons(want_json)
    assert finishes == want_finishes, (finishes, want_finishes)
