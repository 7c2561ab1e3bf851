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


# Paths where an answer may carry a key its capture lacks because the capture predates it.
NEWER_KEYS: dict[str, frozenset[str]] = {
    # 2024-03: no `vtt` yet; the catalog's whisper schema lists it today.
    "run-whisper-rest-envelope": frozenset({"$.result.vtt"}),
    # 2024-07: no `usage`; the 2026 captures (kimi, the streams) all carry it.
    "v1-chat-nonstream-llama3-8b-higress": frozenset({"$.usage"}),
}
# Captures whose request is verbatim: the answer's prompt usage must be within ±3% of the real one
# (completion tokens count the fake's own text, which is not the real text).
VERBATIM_USAGE = frozenset({
    "v1-chat-stream-gpt-oss-20b-toolcall",
    "gateway-compat-stream-llama31-8b",
    "gateway-compat-stream-gpt-oss-20b-toolcall",
    "gateway-compat-chat-kimi-k26-nonstream",
})
USAGE_TOLERANCE = 0.03
# `p` is random padding whose presence on the closing empty event differs between the two native captures.
PADDING = frozenset({"p"})


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
    name = Path(cassette).name
    drift = KNOWN_EMULATOR_DRIFT.get(f"{name}#{index}")
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
    live = target_name != "replay"  # a replayed answer is the capture itself: its times are the capture's
    agrees_with_capture(recorded, response, name=name, plausible=live)
    if live:
        checks.answer_headers({}, response, reached_model=_reached_model(recorded))
        if interaction.request.path.startswith("/v1/"):
            for header in ("cf-aig-log-id", "cf-aig-event-id", "cf-aig-request-id", "cf-aig-step"):
                assert header in response.headers, f"gateway header {header} missing"
    else:
        checks.edge_headers(response)
    if recorded.status < 400 and (live or "cf-ai-req-id" in recorded.headers):
        checks.req_id(response)  # the captures kept no headers; replay can only give back what was recorded
    if live and name in VERBATIM_USAGE:
        usage_agrees(recorded, response)


def _reached_model(recorded: RecordedResponse) -> bool:
    """A success or a model-layer error (errors first) reached Workers AI; edge and gateway errors did not."""
    if recorded.status < 400:
        return True
    body = json.loads(recorded.body_bytes())
    return isinstance(body, dict) and next(iter(body), None) == "errors"


def agrees_with_capture(recorded: RecordedResponse, response: httpx.Response, *, name: str = "",
                        plausible: bool = False) -> None:
    assert response.status_code == recorded.status, checks.describe(response)
    mt = (recorded.content_type or "").split(";")[0]
    assert checks.media_type(response) == mt, checks.describe(response)
    if mt == "text/event-stream":
        stream_agrees(recorded.body_bytes().decode(), response.text)
        for want, got in _paired_events(recorded.body_bytes().decode(), response.text):
            checks.stamps_agree(want, got, response, plausible=plausible)
        return
    want = json.loads(recorded.body_bytes())
    got = response.json()
    checks.js_numbers(response.content)
    if recorded.status >= 400:
        error_agrees(want, got)
        return
    checks.strict_skeleton(want, got, extra_ok=NEWER_KEYS.get(name, frozenset()))
    checks.stamps_agree(want, got, response, plausible=plausible)
    result_want = want.get("result") if isinstance(want, dict) else None
    result_got = got.get("result") if isinstance(got, dict) else None
    if isinstance(result_want, dict) and isinstance(result_got, dict) and "words" in result_want:
        checks.contiguous(result_want["words"], result_got["words"])
        if "vtt" in result_got:
            # Today's answers put `vtt` before `words` (issue 20's field-by-field comparison).
            assert list(result_got) == ["text", "word_count", "vtt", "words"], list(result_got)
            checks.vtt_agrees(result_got)


def usage_agrees(recorded: RecordedResponse, response: httpx.Response) -> None:
    def usage_of(body: str, media: str) -> dict[str, Any]:
        if media == "text/event-stream":
            events = checks.sse_json(checks.sse_events(body))
            return next(e["usage"] for e in events if e.get("usage", {}).get("total_tokens"))
        return dict(json.loads(body)["usage"])

    media = (recorded.content_type or "").split(";")[0]
    want = usage_of(recorded.body_bytes().decode(), media)
    got = usage_of(response.text, media)
    tolerance = USAGE_TOLERANCE * want["prompt_tokens"]
    assert abs(got["prompt_tokens"] - want["prompt_tokens"]) <= tolerance, (
        f"prompt_tokens {got['prompt_tokens']}, real {want['prompt_tokens']} (±{USAGE_TOLERANCE:.0%})")
    assert got["total_tokens"] == got["prompt_tokens"] + got["completion_tokens"], got


def error_agrees(want: dict[str, Any], got: dict[str, Any]) -> None:
    """Same error code and wording; exactly the capture's keys, in its order, at every level."""
    key = "errors" if "errors" in want else "error"
    assert got.get(key), got
    assert got[key][0]["code"] == want[key][0]["code"], got
    assert got[key][0]["message"] == want[key][0]["message"], got[key][0]["message"]
    assert got["success"] is False
    assert list(got) == list(want), f"error body keys {list(got)}, capture {list(want)}"
    assert list(got[key][0]) == list(want[key][0]), (
        f"error item keys {list(got[key][0])}, capture {list(want[key][0])}")
    for k in ("result", "messages"):
        if k in want:
            assert got[k] == want[k], (k, got[k])


def _unpadded(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in PADDING}


def _paired_events(want_text: str, got_text: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each answer event beside the capture's event of the same shape."""
    want = checks.sse_json(checks.sse_events(want_text))
    by_shape = {checks.signature(e, PADDING): e for e in want}
    got = checks.sse_json(checks.sse_events(got_text))
    pairs = [(by_shape.get(checks.signature(e, PADDING)), e) for e in got]
    return [(w, g) for w, g in pairs if w is not None]


def stream_agrees(want_text: str, got_text: str) -> None:
    """SSE framing byte for byte, then the sequence of event shapes (runs of token events collapsed), the
    usage events, tool calls and finish reasons as captured."""
    checks.sse_framing(got_text)
    want, got = checks.sse_events(want_text), checks.sse_events(got_text)
    assert (want[-1] == "[DONE]") == (got[-1] == "[DONE]"), "[DONE] sentinel differs from the capture"
    want_json, got_json = checks.sse_json(want), checks.sse_json(got)
    assert got_json, "no JSON events"
    want_shapes = checks.collapsed([checks.signature(e, PADDING) for e in want_json])
    got_shapes = checks.collapsed([checks.signature(e, PADDING) for e in got_json])
    assert got_shapes == want_shapes, (
        "event shapes differ from the capture:\n"
        + "\n".join(f"  got  {g}\n  want {w}" for g, w in zip(got_shapes, want_shapes, strict=False)
                    if g != w)[:2000] + f"\n({len(got_shapes)} shapes, capture {len(want_shapes)})")
    for want_event, got_event in _paired_events(want_text, got_text):
        checks.strict_skeleton(_unpadded(want_event), _unpadded(got_event), "$event")
    with_usage = [e for e in want_json if e.get("usage")]
    got_usage = [e for e in got_json if e.get("usage")]
    assert len(with_usage) == len(got_usage), "usage events differ from the capture"
    for w, g in zip(with_usage, got_usage, strict=True):
        # A usage event that repeats the real figures (gpt-oss) must not come back as zeros, nor the reverse.
        zeros = (w["usage"]["total_tokens"] == 0, g["usage"]["total_tokens"] == 0)
        assert zeros[0] == zeros[1], (w["usage"], g["usage"])
    if "response" in want_json[0]:  # native /ai/run stream: every event carries `response`
        assert all("response" in e for e in got_json), got_json[:3]
        assert any("p" in e for e in got_json) == any("p" in e for e in want_json), (
            "p padding presence differs"
        )
        return

    def has_tool_calls(events: list[dict[str, Any]]) -> bool:
        return any(c.get("delta", {}).get("tool_calls") for e in events for c in e.get("choices", []))

    assert has_tool_calls(got_json) == has_tool_calls(want_json), "tool_calls deltas differ from the capture"

    # An answer under a roomy max_tokens stops by itself, as the captured ones do (`length` only under a
    # really short cap); tool_calls is behaviour.
    def finish_reasons(events: list[dict[str, Any]]) -> set[Any]:
        return {c.get("finish_reason") for e in events for c in e.get("choices", [])} - {None}

    finishes, want_finishes = finish_reasons(got_json), finish_reasons(want_json)
    assert finishes == want_finishes, (finishes, want_finishes)


# --- Captures that cannot be replayed: what of each is checked, or why nothing can be -------------------
# (fixtures/observations/ ships every capture; the rest are the sources of fixtures/real/.)

OBSERVATIONS_DIR = FIXTURES / "observations"
OBSERVED: dict[str, str] = {
    "binding-results-observed-2026-10.json":
        "Workers binding results, not REST answers: the bge-m3 answer's keys, order, pooling and input "
        "tokens are checked by test_observed_embedding_shapes; the llama-3.2-3b usage has no published "
        "prompt.",
    "err-3040-capacity.json":
        "status and binding text only (the REST bodies are uncertain fixtures): test_observed_error_bodies "
        "checks 429, code 3040 and the real wording.",
    "err-4006-daily-neurons-binding-and-misc.json":
        "binding and app-wrapped texts: test_observed_error_bodies checks 429, code 4006 and that the REST "
        "message carries the binding text.",
    "err-5007-unknown-model-observations.json":
        "binding text (the REST bodies are uncertain fixtures): test_observed_error_bodies checks code 5007 "
        "and the wording.",
    "err-7009-upstream-unavailable.json":
        "status not stated: test_observed_error_bodies checks the body byte for byte (edge kind).",
    "err-aigateway-2005-2008-compat.json":
        "2008 is replayed (fixtures/real/err-aigateway-2008-invalid-provider.json); 2005 needs a provider "
        "failure behind the gateway, which the emulator does not model.",
    "err-rest-envelopes-notebook-2024.json":
        "status not printed: test_observed_error_bodies checks the 7009 and 1000 bodies byte for byte.",
    "err-timeout-and-misc-uncertain.json":
        "uncertain: pasted through the posters' own wrappers; the timeout wording is the catalogue's "
        "`timeout` entry (emulator/errors.py), not replayed.",
    "gateway-errors-2021-2045-2003-5017.json":
        "gateway credit, spend-limit and rate-limit rules the emulator does not model; bodies elided by "
        "their author. Its header set (cf-aig-*) is checked on every gateway answer by test_capture.",
    "headers-and-billing-observed.json":
        "quoted measurements, not header dumps: test_observed_billing checks flux-1-schnell's 172.80, "
        "phoenix-1.0's missing cf-ai-neurons (klein-4b's 104.20: tests/test_flux2_billing.py); test_capture "
        "checks the header set.",
    "run-classify-translate-summarize-notebook.json":
        "distilbert and m2m100 are replayed (fixtures/real/run-classify-translate-notebook.json); resnet has "
        "its own envelope capture; bart and llava printed a field only, without the answer around it.",
    "run-toolcalls-native-llama31-2024-07.json":
        "the SDK stripped the envelope: test_observed_native_tool_calls checks the items' keys and kinds.",
    "v1-chat-nonstream-gemma4-toolcall-gateway-2026-05.json":
        "uncertain and abridged by its author (no `created`, reasoning cut): not replayed.",
    "v1-embeddings-base64-ignored-observation-2026-08.json":
        "an indirect observation without a body: the `embeddings-ignore-base64` quirk "
        "(tests/test_openai_surface.py).",
}


def test_every_capture_is_replayed_or_accounted_for() -> None:
    captures = {p.name for p in OBSERVATIONS_DIR.iterdir()} - {"INDEX.md"}
    replayed = set()
    for path in REAL_DIR.glob("*.json"):
        source = load_cassette(path.read_bytes(), origin=str(path)).source or ""
        replayed.add(source.split("fixtures/observations/", 1)[1].split(" ", 1)[0])
    assert replayed <= captures, f"replayed from captures not shipped: {sorted(replayed - captures)}"
    assert captures == replayed | set(OBSERVED), (
        f"not accounted for: {sorted(captures - replayed - set(OBSERVED))}; "
        f"gone: {sorted(set(OBSERVED) - captures)}")
    index = (OBSERVATIONS_DIR / "INDEX.md").read_text("utf-8")
    listed = {line.split("`")[1] for line in index.splitlines() if line.startswith("| `")}
    assert listed == captures, (
        f"INDEX.md lists {sorted(listed - captures)} not shipped, omits {sorted(captures - listed)}")


def _emulator_only(target_name: str) -> None:
    if target_name != "emulator":
        pytest.skip("needs the emulator's control plane (faults) or would spend real neurons")


def _fault(http: httpx.Client, target: Target, code: int, model: str) -> None:
    response = http.post(f"{target.base}/__emulator__/faults", headers=target.auth(target.token),
                         json={"kind": code, "model": model, "times": 1})
    assert response.status_code == 201, response.text


def _observation(name: str) -> Any:
    return json.loads((OBSERVATIONS_DIR / name).read_text("utf-8"))


def test_observed_error_bodies(target_name: str, http: httpx.Client, request: pytest.FixtureRequest) -> None:
    _emulator_only(target_name)
    target = request.getfixturevalue("target")
    model = "@cf/meta/llama-2-7b-chat-fp16"
    notebook = _observation("err-rest-envelopes-notebook-2024.json")["samples"]
    gateway_7009 = json.loads(_observation("err-7009-upstream-unavailable.json")["samples"][0]["body_raw"])
    for code, want in ((7009, notebook[0]["body"]), (7009, gateway_7009), (1000, notebook[1]["body"])):
        _fault(http, target, code, model)
        response = http.post(target.run_url(model), headers=target.auth(target.token), json={"prompt": "hi"})
        assert response.status_code >= 500, checks.describe(response)
        assert response.content == json.dumps(want, separators=(",", ":")).encode(), checks.describe(response)
        checks.edge_headers(response)
    binding_3040 = _observation("err-3040-capacity.json")["samples"][0]["binding_error_message"]
    binding_4006 = _observation("err-4006-daily-neurons-binding-and-misc.json")["samples"][0]
    for code, status, text in ((3040, 429, binding_3040.split(": ", 1)[1]),
                               (4006, 429, binding_4006["binding_error_message"].split(": ", 1)[1])):
        _fault(http, target, code, model)
        response = http.post(target.run_url(model), headers=target.auth(target.token), json={"prompt": "hi"})
        body = checks.cf_error(response, status, code)
        assert text in body["errors"][0]["message"], body
        checks.model_error_keys(body)
    unknown = _observation("err-5007-unknown-model-observations.json")["samples"][0]["stored_error"]
    response = http.post(target.run_url("@cf/does/not-exist"), headers=target.auth(target.token),
                         json={"prompt": "hi"})
    checks.cf_error(response, 400, 5007, unknown.split(": ", 2)[2])


@pytest.mark.live  # sends its own request: replay needs a recording of it
def test_observed_embedding_shapes(http: httpx.Client, target: Target) -> None:
    sample = _observation("binding-results-observed-2026-10.json")["samples"][0]
    quoted = sample["result_as_quoted"].replace(",…", "").replace("[…]", "[0.5]")
    want = json.loads(quoted)
    auth = target.auth(target.token)
    response = http.post(target.run_url(sample["model"]), headers=auth, json=sample["input"])
    got = checks.envelope(response)
    checks.strict_skeleton(want, got, every_item=False)
    assert got["pooling"] == "cls" and got["response"] is None
    real = want["meta"]["cost_metric_value_1"]
    assert abs(got["meta"]["cost_metric_value_1"] - real) <= USAGE_TOLERANCE * real, got["meta"]


@pytest.mark.live  # sends its own request: replay needs a recording of it
def test_observed_native_tool_calls(http: httpx.Client, target: Target) -> None:
    printed = _observation("run-toolcalls-native-llama31-2024-07.json")["printed_tool_calls"][0]
    tools = [{"name": "helloWorld", "description": "Say hello",
              "parameters": {"type": "object", "required": ["name"],
                             "properties": {"name": {"type": "string", "description": "who"}}}}]
    body = {"messages": [{"role": "user", "content": "Say hello to Bob"}], "tools": tools}
    response = http.post(target.run_url("@cf/meta/llama-3.1-8b-instruct"), headers=target.auth(target.token),
                         json=body)
    result = checks.envelope(response)
    assert result.get("tool_calls"), result
    checks.strict_skeleton(printed, result["tool_calls"][0])


def test_observed_billing(target_name: str, http: httpx.Client, request: pytest.FixtureRequest) -> None:
    _emulator_only(target_name)
    target = request.getfixturevalue("target")
    auth = target.auth(target.token)
    flux = http.post(target.run_url("@cf/black-forest-labs/flux-1-schnell"), headers=auth,
                     json={"prompt": "a lighthouse", "steps": 4})
    checks.envelope(flux)
    assert flux.headers["cf-ai-neurons"] == "172.80"  # 1024x1024, 4 steps, as measured
    phoenix = http.post(target.run_url("@cf/leonardo/phoenix-1.0"), headers=auth,
                        json={"prompt": "a lighthouse", "width": 512, "height": 512})
    assert phoenix.status_code == 200 and checks.media_type(phoenix) == "image/jpeg"
    assert "cf-ai-neurons" not in phoenix.headers
    checks.edge_headers(phoenix)
