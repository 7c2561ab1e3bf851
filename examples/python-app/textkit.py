"""A tiny text tool on Workers AI (cloudflare SDK): summarise a document, translate a sentence."""

from __future__ import annotations

import os
import sys
import time

import cloudflare

SUMMARY_MODEL = "@cf/facebook/bart-large-cnn"
TRANSLATION_MODEL = "@cf/meta/m2m100-1.2b"


def summarise(client: cloudflare.Cloudflare, account_id: str, text: str, max_length: int = 60) -> str:
    result = client.ai.run(SUMMARY_MODEL, account_id=account_id, input_text=text, max_length=max_length)
    return str(result["summary"])


def translate(
    client: cloudflare.Cloudflare,
    account_id: str,
    text: str,
    target_lang: str,
    source_lang: str = "en",
    attempts: int = 3,
) -> str:
    """Translate, retrying Cloudflare's "Capacity temporarily exceeded" (429, code 3040) with back-off."""
    for attempt in range(attempts):
        try:
            result = client.ai.run(
                TRANSLATION_MODEL,
                account_id=account_id,
                text=text,
                source_lang=source_lang,
                target_lang=target_lang,
            )
            return str(result["translated_text"])
        except cloudflare.RateLimitError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def main() -> None:
    # Cloudflare() reads CLOUDFLARE_API_TOKEN and CLOUDFLARE_BASE_URL: set the latter to
    # http://127.0.0.1:8787/client/v4 to run against `workers-ai-emulator serve`.
    client = cloudflare.Cloudflare()
    account_id = os.environ["CLOUDFLARE_ACCOUNT_ID"]
    text = sys.stdin.read() if not sys.stdin.isatty() else "Workers AI runs models on Cloudflare's network."
    print("summary:", summarise(client, account_id, text))
    print("french:", translate(client, account_id, text[:200], "fr"))


if __name__ == "__main__":
    main()
