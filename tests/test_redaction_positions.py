"""Redaction rewrites the secret and nothing else, and recording and replay redact alike.

A property test drives `Redactor` + `CassetteIndex` with any token and any exchange; the HTTP tests
record through a real server in front of a real local upstream and replay the file it wrote."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.backends import large_bodies
from emulator.cassettes import (
    Body,
    Cassette,
    CassetteIndex,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    Redactor,
    load_cassette,
    normalise_request,
)
from tests.conftest import ACCOUNT, Emulator, ServerFactory
from tests.fake_upstream import LLAMA, REAL_ACCOUNT, REAL_TOKEN, FakeUpstream, pretty_answer_hiding

PATH = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"

TOKENS = st.text(alphabet=string.ascii_letters + string.digits + "._~+/=-", min_size=1, max_size=40)
WORDS = st.text(alphabet=string.ascii_letters + string.digits + " .,:-_/", max_size=30)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | WORDS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(WORDS, children, max_size=4),
    max_leaves=12,
)


def record(redactor: Redactor, path: str, query: dict[str, str], body: Any) -> Interaction:
    raw = orjson.dumps(body)
    request = RecordedRequest.build("POST", path, query, {"Content-Type": "application/json"}, raw)
    response = RecordedResponse.build(200, {"Content-Type": "application/json"}, raw)
    return Interaction(request=redactor.redact_request(request), response=redactor.redact_response(response))


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(token=TOKENS, body=JSON, segment=WORDS, query=st.dictionaries(WORDS, WORDS, max_size=3),
       carry=st.sampled_from(["none", "value", "inside", "segment", "query"]))
def test_any_recorded_exchange_with_any_token_replays(
    token: str, body: Any, segment: str, query: dict[str, str], carry: str
) -> None:
    path = PATH + ("/" + segment.replace("/", "") if segment.replace("/", "") else "")
    if carry == "value":
        body = {"data": body, "copy": token}
    elif carry == "inside":
        body = {"data": body, "note": f"my token is {token}!"}
    elif carry == "segment":
        path = f"{PATH}/{token.replace('/', '')}" if token.replace("/", "") else path
    elif carry == "query":
        query = {**query, "key": token}
    recorder = Redactor(secrets=[token], account_ids=[ACCOUNT])
    interaction = record(recorder, path, query, body)
    index = CassetteIndex(Cassette(name="p", interactions=[interaction]), redactor=Redactor())
    # Replay knows the same credential (the client sends the same token): the request matches.
    replayer = Redactor(secrets=[token], account_ids=[ACCOUNT])
    played = index.play("POST", path, query, orjson.dumps(body), "application/json", redactor=replayer)
    assert played is not None and played[0] is index.cassette.interactions[0]


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(token=TOKENS.filter(lambda t: len(t) < 8), body=JSON, query=st.dictionaries(WORDS, WORDS, max_size=3))
def test_a_short_token_rewrites_nothing_that_is_not_exactly_it(
    token: str, body: Any, query: dict[str, str]
) -> None:
    def holds_token_as_whole_value(value: Any) -> bool:
        if isinstance(value, str):
            return value == token
        if isinstance(value, list):
            return any(holds_token_as_whole_value(v) for v in value)
        if isinstance(value, dict):
            return any(k == token or holds_token_as_whole_value(v) for k, v in value.items())
        return False

    if holds_token_as_whole_value(body) or token in query.values() or token in query:
        return
    with_token = record(Redactor(secrets=[token], account_ids=[ACCOUNT]), PATH, query, body)
    without = record(Redactor(account_ids=[ACCOUNT]), PATH, query, body)
    assert with_token.model_dump(exclude={"recorded_at"}) == without.model_dump(exclude={"recorded_at"})


def test_the_readme_token_t_leaves_the_letter_t_alone() -> None:
    redactor = Redactor(secrets=["t"])
    interaction = record(redactor, PATH + "/t", {"format": "text", "key": "t"},
                         {"success": True, "text": "tattoo", "t": "t", "list": ["t", "at"]})
    assert interaction.request.path.endswith("/meta/llama-3.1-8b-instruct/REDACTED")
    assert interaction.request.query == {"format": "text", "key": "REDACTED"}
    assert interaction.request.body.json_ == {"success": True, "text": "tattoo", "REDACTED": "REDACTED",
                                              "list": ["REDACTED", "at"]}
    stored = orjson.loads(interaction.response.body_bytes())
    assert stored["success"] is True and stored["text"] == "tattoo"


# Over real HTTP ---------------------------------------------------------------------------------



def _settings(upstream: FakeUpstream, tmp_path: Path, mode: str) -> dict[str, Any]:
    return {"mode": mode, "upstream": upstream.base, "upstream_gateway": upstream.base,
            "upstream_token": REAL_TOKEN, "upstream_account_id": REAL_ACCOUNT,
            "cassette_dir": tmp_path / "cassettes", "cassette": "redaction"}


async def _post(emu: Emulator, token: str, body: Any, path: str = "") -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    async with emu.session.post(emu.run_url(LLAMA) + path, json=body, headers=headers) as resp:
        return resp.status, await resp.read()


def _decoded_strings(cassette_path: Path) -> str:
    """Every string the cassette holds, JSON escapes decoded (bodies kept as text included)."""
    cassette = load_cassette(cassette_path.read_bytes())
    parts = [json.dumps(cassette.model_dump(mode="json"), ensure_ascii=False)]
    for interaction in cassette.interactions:
        raw = interaction.response.body_bytes()
        try:
            parts.append(json.dumps(json.loads(raw), ensure_ascii=False))
        except ValueError:
            parts.append(raw.decode("utf-8", "replace"))
    return "\n".join(parts)


async def test_recording_with_token_t_keeps_the_cassette_intact_and_replayable(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    recorder = await make_emulator(**_settings(upstream, tmp_path, "record"))
    bodies = [{"prompt": "tell me a story", "max_tokens": 16}, {"prompt": "t"}]
    recorded = [await _post(recorder, "t", body) for body in bodies]
    assert all(status == 200 for status, _ in recorded)
    text = (tmp_path / "cassettes" / "redaction.json").read_text()
    assert "REDACTEDrue" not in text and "REDACTEDell" not in text and "max_tokens" in text
    assert '"prompt":"REDACTED"' in text.replace(" ", "")  # the whole-value copy of the token is gone

    await upstream.stop()
    replayer = await make_emulator(**_settings(upstream, tmp_path, "replay"))
    for body, (_, answer) in zip(bodies, recorded, strict=True):
        status, again = await _post(replayer, "t", body)
        assert status == 200 and again == answer, again[:300]


async def test_a_request_carrying_the_client_token_replays(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    token = "client-token-in-body-7d6c5b4a"
    body = {"prompt": f"please use {token} for me", "extra": token}
    recorder = await make_emulator(**_settings(upstream, tmp_path, "record"))
    status, answer = await _post(recorder, token, body)
    assert status == 200
    assert token not in (tmp_path / "cassettes" / "redaction.json").read_text()

    await upstream.stop()
    replayer = await make_emulator(**_settings(upstream, tmp_path, "replay"))
    status, again = await _post(replayer, token, body)
    assert status == 200 and again == answer, again[:400]


async def test_a_json_escaped_token_in_an_upstream_answer_is_not_stored(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    recorder = await make_emulator(**_settings(upstream, tmp_path, "record"))
    status, answer = await _post(recorder, "client-token-1234567", {"prompt": "echo-token-escaped"})
    assert status == 200 and REAL_TOKEN in json.loads(answer)["result"]["response"]  # relayed as is
    assert REAL_TOKEN not in _decoded_strings(tmp_path / "cassettes" / "redaction.json")


def test_normalise_request_redacts_percent_encoded_secret_segments_like_recording() -> None:
    redactor = Redactor(secrets=["t"])
    recorded = record(redactor, PATH + "/%74", {}, {"a": 1})
    live = normalise_request("POST", PATH + "/%74", {}, b'{"a": 1}', "application/json", redactor=redactor)
    assert live.path == recorded.request.path


@pytest.mark.parametrize("client_token", ["t", "client-token-1234567"])
async def test_a_large_answer_hiding_secrets_is_stored_as_the_whole_path_stores_it(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    client_token: str,
) -> None:
    """A 2 MB indented answer, kept as text and redacted in pieces by the large path
    (`large_bodies._large_text_answer`), quoting the real token behind a JSON escape and holding a
    string that is exactly "t": stored as `Redactor.redact_body` stores the whole answer (its
    redacted document, as the escaped token is found only by parsing), and replayed as such."""
    taken: list[bool] = []
    original = large_bodies._large_text_answer

    async def spy(*args: Any) -> Any:
        body = await original(*args)
        taken.append(body is not None)
        return body

    monkeypatch.setattr(large_bodies, "_large_text_answer", spy)
    recorder = await make_emulator(**_settings(upstream, tmp_path, "record"))
    status, answer = await _post(recorder, client_token, {"prompt": "pretty-answer-hiding-secrets"})
    assert status == 200 and answer == pretty_answer_hiding(REAL_TOKEN)  # relayed as is
    assert taken == [True]
    cassette = tmp_path / "cassettes" / "redaction.json"
    stored = load_cassette(cassette.read_bytes()).interactions[0].response.body
    whole = Redactor(secrets=[REAL_TOKEN, client_token], account_ids=[REAL_ACCOUNT, ACCOUNT])
    expected = whole.redact_body(Body.from_bytes(answer, "application/json", exact=True))
    assert stored == expected and expected.encoding == "json"
    assert expected.json_["result"]["short"] == ("REDACTED" if client_token == "t" else "t")
    assert REAL_TOKEN not in _decoded_strings(cassette)

    await upstream.stop()
    replayer = await make_emulator(**_settings(upstream, tmp_path, "replay"))
    status, again = await _post(replayer, client_token, {"prompt": "pretty-answer-hiding-secrets"})
    assert status == 200 and again == expected.to_bytes()
