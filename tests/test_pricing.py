"""Tests for pricing: price rules, neuron arithmetic, coverage of the catalog, rate limits."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from emulator.accounting.pricing import PriceBook, dollars, load_prices, round_neurons
from emulator.call import Usage

PAGE = "pricing-page-2026-08-28"
EXTRAS = [
    "@cf/fblgit/una-cybertron-7b-v2-awq",
    "@cf/mistral/mistral-7b-instruct-v0.1-vllm",
    "@hf/thebloke/codellama-7b-instruct-awq",
    "@cf/openai/whisper-sherpa",
]


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return load_prices()


def catalog_records() -> list[dict]:
    data = resources.files("emulator") / "catalog" / "data"
    return [
        json.loads(p.read_text(encoding="utf-8"))
        for p in data.iterdir()
        if p.name.endswith(".json") and not p.name.startswith("_")
    ]


def test_every_catalog_model_and_guide_extra_has_a_rule(book: PriceBook) -> None:
    names = {r["name"] for r in catalog_records()}
    assert len(names) == 111
    for name in sorted(names) + EXTRAS:
        assert book.has_rule(name), name
        rule = book.rule(name)
        assert rule.source in {PAGE, "catalog", "estimate"}
        if rule.estimated:
            assert rule.estimated_from and book.has_rule(rule.estimated_from), name
            assert rule.note, name
        else:
            assert rule.estimated_from is None


def test_catalog_prices_convert_at_011_per_1000(book: PriceBook) -> None:
    # Every model whose only price is the catalog property matches that price within rounding.
    for rec in catalog_records():
        rule = book.rule(rec["name"])
        if rule.source != "catalog":
            continue
        price = next(p["value"] for p in rec["properties"] if p["property_id"] == "price")
        for item in price:
            neurons = item["price"] / 0.011 * 1000
            assert any(abs(v - neurons) < 0.01 for v in rule.rates.values()), (rec["name"], item)


def test_llama_31_8b_tokens(book: PriceBook) -> None:
    rule = book.rule("@cf/meta/llama-3.1-8b-instruct")
    assert (rule.rule, rule.source, rule.estimated) == ("tokens", PAGE, False)
    n = book.neurons("@cf/meta/llama-3.1-8b-instruct", Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    assert n == pytest.approx(25608 + 75147)
    n = book.neurons("@cf/meta/llama-3.1-8b-instruct", Usage(input_tokens=1000, output_tokens=500))
    assert n == pytest.approx(25.608 + 37.5735)
    assert round_neurons(n) == "63.18"


def test_cached_input_tokens_are_part_of_input(book: PriceBook) -> None:
    m = "@cf/moonshotai/kimi-k2.6"
    n = book.neurons(m, Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=0))
    assert n == pytest.approx(0.6 * 86364 + 0.4 * 14545)
    # Without a cached rate, cached tokens cost the input rate.
    plain = "@cf/meta/llama-3.1-8b-instruct"
    assert book.neurons(plain, Usage(input_tokens=1000, cached_input_tokens=1000)) == pytest.approx(25.608)


def test_bge_embeddings(book: PriceBook) -> None:
    rule = book.rule("@cf/baai/bge-base-en-v1.5")
    assert rule.rule == "embedding_tokens" and rule.source == PAGE
    assert book.neurons("@cf/baai/bge-base-en-v1.5", Usage(input_tokens=1000)) == pytest.approx(6.058)
    assert book.neurons("@cf/baai/bge-small-en-v1.5", Usage(input_tokens=1_000_000)) == pytest.approx(1841)
    # Output tokens are not billed for embeddings.
    assert book.neurons("@cf/baai/bge-m3", Usage(input_tokens=0, output_tokens=999)) == 0.0


def test_flux_schnell_tiles_and_steps(book: PriceBook) -> None:
    m = "@cf/black-forest-labs/flux-1-schnell"
    assert book.rule(m).rule == "tiles_steps"
    n = book.neurons(m, Usage(output_tiles=4.0, steps=4))
    assert n == pytest.approx(4 * 4.80 + 4 * 9.60)
    assert round_neurons(n) == "57.60"


def test_flux2_rules(book: PriceBook) -> None:
    dev = book.neurons("@cf/black-forest-labs/flux-2-dev", Usage(input_tiles=2, output_tiles=4, steps=10))
    assert dev == pytest.approx(10 * (2 * 18.75 + 4 * 37.5))
    # Measured: a 1280x720 klein call cost 104.20 = ceil(1280*720 / 512²) = 4 tiles × 26.05.
    klein = book.neurons("@cf/black-forest-labs/flux-2-klein-4b", Usage(output_tiles=4, steps=4))
    assert round_neurons(klein) == "104.20"
    klein_in = book.neurons("@cf/black-forest-labs/flux-2-klein-4b", Usage(input_tiles=1, output_tiles=4))
    assert klein_in == pytest.approx(5.37 + 104.2)


def test_klein_9b_megapixels(book: PriceBook) -> None:
    m = "@cf/black-forest-labs/flux-2-klein-9b"
    assert book.rule(m).rule == "megapixels"
    assert round_neurons(book.neurons(m, Usage(megapixels=1.0))) == "1363.64"
    assert book.neurons(m, Usage(megapixels=0.25)) == pytest.approx(1363.64)  # first MP is a flat fee
    assert book.neurons(m, Usage(megapixels=3.0, input_megapixels=1.0)) == pytest.approx(
        1363.64 + 2 * 181.82 + 181.82
    )
    assert book.neurons(m, Usage(megapixels=0.0)) == 0.0


def test_whisper_minutes(book: PriceBook) -> None:
    assert book.rule("@cf/openai/whisper").source == PAGE
    assert book.neurons("@cf/openai/whisper", Usage(audio_seconds=60)) == pytest.approx(41.14)
    assert book.neurons("@cf/openai/whisper", Usage(audio_seconds=30)) == pytest.approx(20.57)
    assert book.neurons("@cf/openai/whisper-large-v3-turbo", Usage(audio_seconds=120)) == pytest.approx(93.26)


def test_aura_characters(book: PriceBook) -> None:
    assert book.rule("@cf/deepgram/aura-1").rule == "characters_per_1k"
    assert book.neurons("@cf/deepgram/aura-1", Usage(characters=1000)) == pytest.approx(1363.64)
    assert book.neurons("@cf/deepgram/aura-2-en", Usage(characters=500)) == pytest.approx(1363.635)


def test_resnet_images(book: PriceBook) -> None:
    rule = book.rule("@cf/microsoft/resnet-50")
    assert rule.rule == "images" and rule.source == PAGE
    assert book.neurons("@cf/microsoft/resnet-50", Usage(images=1)) == pytest.approx(0.228055)
    assert round_neurons(book.neurons("@cf/microsoft/resnet-50", Usage(images=1))) == "0.23"


def test_catalog_derived_models_are_flagged(book: PriceBook) -> None:
    clef = book.rule("@cf/cloudflare/clef")
    assert clef.source == "catalog" and not clef.estimated
    assert clef.rates["per_m_input"] == pytest.approx(0.24 / 0.011 * 1000, abs=0.01)
    inpaint = book.rule("@cf/runwayml/stable-diffusion-v1-5-inpainting")
    assert inpaint.source == "catalog"
    assert book.neurons(inpaint.model, Usage(output_tiles=4, steps=20)) == 0.0


@pytest.mark.parametrize(
    ("model", "sibling"),
    [
        ("@cf/openai/whisper-tiny-en", "@cf/openai/whisper"),
        ("@cf/openai/whisper-sherpa", "@cf/openai/whisper"),
        ("@cf/baai/omni-bge-base-en-v1.5", "@cf/baai/bge-base-en-v1.5"),
        ("@cf/tiiuae/falcon-7b-instruct", "@cf/mistral/mistral-7b-instruct-v0.1"),
        ("@cf/meta/llama-2-7b-chat-int8", "@cf/meta/llama-2-7b-chat-fp16"),
        ("@cf/qwen/qwen1.5-0.5b-chat", "@cf/meta/llama-3.2-1b-instruct"),
        ("@cf/qwen/qwen1.5-14b-chat-awq", "@cf/google/gemma-3-12b-it"),
    ],
)
def test_estimated_models_copy_their_sibling(book: PriceBook, model: str, sibling: str) -> None:
    rule = book.rule(model)
    assert rule.estimated and rule.estimated_from == sibling
    assert dict(rule.rates) == dict(book.rule(sibling).rates)
    assert rule.rule == book.rule(sibling).rule


def test_unknown_model_gets_estimated_token_rule(book: PriceBook) -> None:
    rule = book.rule("@cf/nobody/new-model")
    assert rule.model == "@cf/nobody/new-model"
    assert rule.rule == "tokens" and rule.estimated
    assert book.neurons("@cf/nobody/new-model", Usage(input_tokens=1000)) > 0


def test_round_neurons_formatting() -> None:
    assert round_neurons(0) == "0.00"
    assert round_neurons(-1e-12) == "0.00"
    assert round_neurons(104.2) == "104.20"
    assert round_neurons(1363.64) == "1363.64"
    assert round_neurons(172.8) == "172.80"
    assert round_neurons(0.004) == "0.00"
    assert round_neurons(1.98) == "1.98"
    assert round_neurons(float("nan")) == "0.00"


def test_dollars_and_constants(book: PriceBook) -> None:
    assert dollars(1000) == pytest.approx(0.011)
    assert dollars(10_000) == pytest.approx(0.11)
    assert book.neuron_usd == pytest.approx(0.011 / 1000)
    assert book.free_daily_neurons == 10_000


def test_rate_limits(book: PriceBook) -> None:
    assert book.rate_limit_rpm("@cf/meta/llama-3.1-8b-instruct", "Text Generation") == 300
    assert book.rate_limit_rpm("@cf/microsoft/phi-2", "Text Generation") == 720
    assert book.rate_limit_rpm("@cf/qwen/qwen1.5-14b-chat-awq", "Text Generation") == 150
    assert book.rate_limit_rpm("@cf/baai/bge-large-en-v1.5", "Text Embeddings") == 1500
    assert book.rate_limit_rpm("@cf/baai/bge-base-en-v1.5", "Text Embeddings") == 3000
    assert book.rate_limit_rpm("@cf/runwayml/stable-diffusion-v1-5-img2img", "Text-to-Image") == 1500
    assert book.rate_limit_rpm("@cf/moonshotai/kimi-k2.6", "Text Generation") == 20
    assert book.rate_limit_rpm("@cf/openai/whisper", "Automatic Speech Recognition") == 720
    assert book.rate_limit_rpm("@cf/myshell-ai/melotts", "Text-to-Speech") is None


def test_load_prices_is_cached() -> None:
    assert load_prices() is load_prices()


def test_price_book_from_custom_document() -> None:
    doc = {
        "default_rule": {"rule": "tokens", "rates": {"per_m_input": 1}, "source": "estimate"},
        "models": {"m": {"rule": "images", "rates": {"per_m_images": 2_000_000}, "source": "catalog"}},
    }
    book = PriceBook(doc)
    assert book.neurons("m", Usage(images=3)) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="unknown price rule"):
        PriceBook({**doc, "models": {"x": {"rule": "bogus", "rates": {}, "source": "catalog"}}})
