"""What `serve` prints once the server listens (the base URL for each kind of client, the data directory,
a recording's cassette and upstream account) and, for a recording, what it wrote when it stops."""

from __future__ import annotations

import os
from pathlib import Path

from emulator.cassettes.format import count_interactions
from emulator.cassettes.store import open_regular, read_range
from emulator.launch import eventloop
from emulator.settings import DEFAULT_ACCOUNT, Mode, Settings

DEMO_ACCOUNT = DEFAULT_ACCOUNT


def banner(settings: Settings) -> str:
    base = (
        f"http://{settings.host if settings.host not in ('0.0.0.0', '::') else '127.0.0.1'}:{settings.port}"
    )
    acct = DEMO_ACCOUNT
    token = settings.token or "any-token"
    return "\n".join(
        [
            f"workers-ai-emulator {settings.mode.value} mode listening on {base}",
            "",
            f'  cloudflare SDK     Cloudflare(api_token="{token}", base_url="{base}/client/v4")',
            f'  OpenAI-compatible  OpenAI(api_key="{token}",'
            f' base_url="{base}/client/v4/accounts/{acct}/ai/v1")',
            f"  REST base          {base}/client/v4/accounts/{acct}/ai/run/<model>",
            f"  dashboard          {base}/__emulator__/",
            f"  env.AI binding     Miniflare ai.remoteProxyConnectionString: {base}/",
            f"                     (one account per test: {base}/binding/<32-hex account id>)",
            "",
            "  curl example:",
            f"    curl {base}/client/v4/accounts/{acct}/ai/run/@cf/meta/llama-3-8b-instruct \\",
            f"      -H 'Authorization: Bearer {token}' \\",
            '      -d \'{"prompt": "Where did the phrase Hello World come from"}\'',
            "",
            "  Any 32-hex account id works; without --token any non-empty token is accepted.",
            f"  data directory     {settings.resolved_data_dir()}  (ledger: `workers-ai-emulator usage"
            f" --port {settings.port}`)",
            f"  event loop         {eventloop.chosen(settings.event_loop).value}",
            *recording_lines(settings),
        ]
    )


RECORDING_MODES = (Mode.RECORD, Mode.REPLAY_OR_RECORD, Mode.PASSTHROUGH)


def cassette_path(settings: Settings) -> Path:
    return settings.resolved_cassette_dir() / f"{settings.cassette}.json"


def recording_lines(settings: Settings) -> list[str]:
    """Which cassette a non-mock mode reads or writes, and which credentials go upstream (never the token)."""
    if settings.mode is Mode.MOCK:
        return []
    lines = []
    if settings.mode is not Mode.PASSTHROUGH:
        lines.append(f"  cassette           {cassette_path(settings)}")
    if settings.mode not in RECORDING_MODES:
        return lines
    account = settings.upstream_account_id
    if settings.upstream_token and account:
        lines.append(
            f"  upstream           {settings.upstream} as account {account} (token from CLOUDFLARE_API_TOKEN)"
        )
        return lines
    named = (("CLOUDFLARE_API_TOKEN", settings.upstream_token), ("CLOUDFLARE_ACCOUNT_ID", account))
    missing = [name for name, value in named if not value]
    lines += [
        "",
        f"  WARNING: {' and '.join(missing)} not set: calls go to {settings.upstream} with",
        "  each client's own token and account id (the local ones are refused there). Set both to record.",
    ]
    return lines


def interactions_in(path: Path) -> int:
    """How many interactions the cassette file holds (0 when it cannot be read or is not a regular file),
    counted without parsing them where the format allows (`count_interactions`: a version-2 file's
    lines)."""
    try:
        fd = open_regular(path)  # a FIFO named like the cassette would block the start otherwise
    except (OSError, ValueError):
        return 0
    try:
        return count_interactions(read_range(fd, 0, os.fstat(fd).st_size), origin=str(path))
    except (OSError, ValueError):
        return 0
    finally:
        os.close(fd)


def shutdown_summary(settings: Settings, before: int) -> str | None:
    """What a recording run wrote, printed when the server stops."""
    if settings.mode not in (Mode.RECORD, Mode.REPLAY_OR_RECORD):
        return None
    path = cassette_path(settings)
    after = interactions_in(path)
    if settings.mode is Mode.RECORD:
        return f"recorded {after} interaction(s) into {path}" if path.is_file() else "nothing was recorded"
    return f"recorded {max(after - before, 0)} new interaction(s) into {path} ({after} in the cassette)"
