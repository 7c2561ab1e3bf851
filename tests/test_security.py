"""Security defaults: loopback bind, public-bind warning, no secrets in logs or answers, guarded control."""

from __future__ import annotations

import io
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from emulator import cli
from emulator.launch import log_redaction
from emulator.server import app as app_module
from emulator.server.paths import Kind
from tests.conftest import ACCOUNT, ServerFactory
from tests.serving import serve

SECRET_TOKEN = "sekret-token-4f1d9a7be2c0"
WRONG_TOKEN = "wrong-token-77aa99cc33ee"
GLOBAL_KEY = "0123456789abcdef0123456789abcdef01234"
EMAIL = "someone@example.com"


def test_serve_binds_loopback_by_default() -> None:
    serve_cmd = cli.main.commands["serve"]
    host = next(p for p in serve_cmd.params if p.name == "host")
    assert host.default == "127.0.0.1"


@pytest.mark.parametrize(
    ("args", "warned"),
    [
        (["--host", "0.0.0.0"], True),
        (["--host", "0.0.0.0", "--token", SECRET_TOKEN], False),
        ([], False),
    ],
)
def test_public_bind_without_token_warns(
    monkeypatch: pytest.MonkeyPatch, args: list[str], warned: bool
) -> None:
    monkeypatch.setattr(cli.eventloop, "run", lambda coro, kind: coro.close())  # do not really listen
    result = CliRunner().invoke(cli.main, ["serve", *args])
    assert result.exit_code == 0, result.output
    assert ("without --token" in result.output) is warned


def test_secrets_never_reach_the_server_log(tmp_path: Path) -> None:
    with serve("--token", SECRET_TOKEN, data_dir=tmp_path) as (base, proc):
        ai = f"{base}/client/v4/accounts/{ACCOUNT}/ai"
        attempts = [
            {"Authorization": f"Bearer {WRONG_TOKEN}"},
            {"Authorization": f"Bearer {SECRET_TOKEN}"},
            {"X-Auth-Email": EMAIL, "X-Auth-Key": GLOBAL_KEY},
            {"Authorization": f"Basic {SECRET_TOKEN}"},
        ]
        for headers in attempts:
            for body in (b"{not json", b"[" * 5000 + b"]" * 5000, b'{"prompt": 1}'):
                requests.post(
                    f"{ai}/run/@cf/meta/llama-3.1-8b-instruct",
                    data=body,
                    headers={**headers, "Content-Type": "application/json"},
                    timeout=30,
                )
            requests.post(f"{ai}/run/@cf/no/such", json={"prompt": SECRET_TOKEN}, headers=headers, timeout=30)
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    for secret in (SECRET_TOKEN, WRONG_TOKEN, GLOBAL_KEY, EMAIL, ACCOUNT):
        assert secret not in stderr, (secret, stderr[-2000:])


def test_log_filter_redacts_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(log_redaction.RedactingFilter(log_redaction.Redactor(secrets=[SECRET_TOKEN])))
    logger = logging.getLogger("workers_ai_emulator.test_security")
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"failed with Authorization: Bearer {WRONG_TOKEN} for {SECRET_TOKEN}")
        except RuntimeError:
            logger.exception("POST /client/v4/accounts/%s/ai/run/x X-Auth-Key: %s", ACCOUNT, GLOBAL_KEY)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "RuntimeError" in text and "Traceback" in text
    for secret in (SECRET_TOKEN, WRONG_TOKEN, GLOBAL_KEY, ACCOUNT):
        assert secret not in text, text


def test_log_filter_drops_the_quote_of_a_line_too_long_error() -> None:
    from aiohttp.http_exceptions import LineTooLong

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(log_redaction.RedactingFilter(log_redaction.Redactor(secrets=[])))
    logger = logging.getLogger("workers_ai_emulator.test_security")
    logger.addHandler(handler)
    try:
        for value in (b"session=COOKIESECRET4" + b"Q" * 100, b"it's LONGXAUTHSECRET" + b"Q" * 100):
            try:
                raise LineTooLong(value, "8190")
            except LineTooLong:
                logger.exception("Error handling request from %s", "127.0.0.1")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("Got more than 8190 bytes when reading: REDACTED") == 2, text
    assert "COOKIESECRET4" not in text and "LONGXAUTHSECRET" not in text, text


async def test_internal_error_answers_the_1000_envelope_only(
    make_emulator: ServerFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(*_args: object) -> None:
        raise RuntimeError(f"internal detail {SECRET_TOKEN} /secret/path.py")

    monkeypatch.setitem(app_module.HANDLERS, Kind.TASKS_SEARCH, explode)
    emu = await make_emulator()
    async with emu.session.get(f"{emu.ai}/tasks/search", headers={"Authorization": "Bearer x"}) as resp:
        text = await resp.text()
        assert resp.status == 500
    assert text == (
        '{"errors":[{"message":"Server Error","code":1000}],"success":false,"result":{},"messages":[]}'
    )
    assert "unexpected error" in caplog.text  # logged for the operator, not sent to the client


def test_control_plane_can_be_disabled(tmp_path: Path) -> None:
    with serve("--no-control-plane", data_dir=tmp_path) as (base, _proc):
        for path in ("/__emulator__/requests", "/__emulator__/openapi.json", "/__emulator__/faults"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(base + path, timeout=10)
            assert caught.value.code in (400, 404)


def test_control_plane_requires_the_token_when_one_is_set(tmp_path: Path) -> None:
    with serve("--token", SECRET_TOKEN, data_dir=tmp_path) as (base, _proc):
        denied = requests.get(base + "/__emulator__/requests", timeout=10)
        assert denied.status_code in (401, 403)
        allowed = requests.get(
            base + "/__emulator__/requests", headers={"Authorization": f"Bearer {SECRET_TOKEN}"}, timeout=10
        )
        assert allowed.status_code == 200
        assert SECRET_TOKEN not in denied.text
