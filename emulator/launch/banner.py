"""What `serve` prints once the server listens: the base URL for each kind of client."""

from __future__ import annotations

from emulator.settings import DEFAULT_ACCOUNT, Settings

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
        ]
    )
