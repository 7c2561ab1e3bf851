"""The example app's tests: each gets a fresh emulator through the `workers_ai` fixture."""

from __future__ import annotations

import cloudflare
import pytest
import textkit

ARTICLE = ("The emulator answers the Workers AI REST API locally. " * 12).strip()


def test_summarise_returns_text(workers_ai) -> None:
    summary = textkit.summarise(workers_ai.cloudflare, workers_ai.account_id, ARTICLE)
    assert summary and len(summary) < len(ARTICLE)


def test_summarise_with_a_stub(workers_ai) -> None:
    workers_ai.stub(model=textkit.SUMMARY_MODEL, result={"summary": "A local Workers AI."})
    assert textkit.summarise(workers_ai.cloudflare, workers_ai.account_id, ARTICLE) == "A local Workers AI."


def test_translate_retries_one_capacity_error(workers_ai) -> None:
    workers_ai.fault("capacity", model=textkit.TRANSLATION_MODEL, times=1)
    french = textkit.translate(workers_ai.cloudflare, workers_ai.account_id, "Good morning", "fr")
    assert french
    statuses = [r["status"] for r in workers_ai.requests]
    assert statuses == [429, 200]


def test_translate_gives_up_when_capacity_stays_exceeded(workers_ai) -> None:
    workers_ai.fault("capacity", model=textkit.TRANSLATION_MODEL)
    with pytest.raises(cloudflare.RateLimitError):
        textkit.translate(workers_ai.cloudflare, workers_ai.account_id, "Good morning", "fr", attempts=2)


@pytest.mark.workers_ai(budget=20)  # fails the test if it spends more than 20 neurons
def test_a_day_of_translations_fits_the_budget(workers_ai) -> None:
    for sentence in ["Good morning", "Thank you", "See you tomorrow"]:
        textkit.translate(workers_ai.cloudflare, workers_ai.account_id, sentence, "de")
    assert 0 < workers_ai.cost().neurons <= 20
