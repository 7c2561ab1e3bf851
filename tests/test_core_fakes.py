"""The five core tasks over HTTP: text generation (streamed too), embeddings, images, ASR, translation."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import orjson
import pytest
from PIL import Image

from emulator.catalog import guide
from emulator.fakes import tokens
from emulator.fakes.text import count_tokens
from tests.conftest import AUTH, Emulator, ServerFactory, parse_sse, wav_bytes

LLAMA = "@cf/meta/llama-3-8b-instruct"


async def test_text_generation_prompt_and_usage(emulator: Emulator) -> None:
    resp = await emulator.run(LLAMA, {"prompt": "Tell me about the sea"})
    result = (await resp.json())["result"]
    assert isinstance(result["response"], str) and len(result["response"]) > 20
    usage = result["usage"]
    assert usage["completion_tokens"] == tokens.completion_tokens(LLAMA, result["response"])
    assert usage["prompt_tokens"] == tokens.prompt_text_tokens(LLAMA, "Tell me about the sea")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_text_generation_messages_and_max_tokens(emulator: Emulator) -> None:
    body = {
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
        "max_tokens": 5,
    }
    result = (await (await emulator.run(LLAMA, body)).json())["result"]
    assert result["usage"]["completion_tokens"] <= 5
    assert count_tokens(result["response"]) <= 5


async def test_request_seed_changes_the_answer(emulator: Emulator) -> None:
    a = (await (await emulator.run(LLAMA, {"prompt": "x", "seed": 1})).json())["result"]["response"]
    b = (await (await emulator.run(LLAMA, {"prompt": "x", "seed": 2})).json())["result"]["response"]
    again = (await (await emulator.run(LLAMA, {"prompt": "x", "seed": 1})).json())["result"]["response"]
    assert a != b and a == again


async def test_server_seed_changes_the_answer(make_emulator: ServerFactory) -> None:
    one = await make_emulator(seed=1)
    two = await make_emulator(seed=2)
    a = await (await one.run(LLAMA, {"prompt": "x"})).read()
    b = await (await two.run(LLAMA, {"prompt": "x"})).read()
    assert a != b


async def test_native_stream_framing(emulator: Emulator) -> None:
    body = {"prompt": "Tell me a story", "stream": True}
    resp = await emulator.run(LLAMA, body)
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    events = parse_sse(await resp.text())
    assert events[-1] == "[DONE]"
    tokens = [orjson.loads(e) for e in events[:-3]]
    assert all(set(t) == {"response", "p"} for t in tokens)
    assert all(
        re.fullmatch(r"[a-z0-9]+", t["p"]) and "abcdefghijklmnopqrstuvwxyz0123456789".startswith(t["p"][:36])
        for t in tokens
    )
    assert orjson.loads(events[-3]) == {"response": ""}
    final = orjson.loads(events[-2])
    assert final["response"] == "" and set(final["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }
    # The streamed text is the non-streamed answer, token by token.
    plain = (await (await emulator.run(LLAMA, {"prompt": "Tell me a story"})).json())["result"]
    assert "".join(t["response"] for t in tokens) == plain["response"]
    assert final["usage"] == plain["usage"]


async def test_stream_events_are_flushed_one_by_one(emulator: Emulator) -> None:
    resp = await emulator.run(LLAMA, {"prompt": "Tell me a story", "stream": True, "max_tokens": 40})
    chunks = [chunk async for chunk in resp.content.iter_any()]
    assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
    assert len(chunks) >= 2


@pytest.mark.parametrize(
    ("model", "dims"),
    [
        ("@cf/baai/bge-small-en-v1.5", 384),
        ("@cf/baai/bge-base-en-v1.5", 768),
        ("@cf/baai/bge-large-en-v1.5", 1024),
    ],
)
async def test_embeddings_shape_and_norm(emulator: Emulator, model: str, dims: int) -> None:
    resp = await emulator.run(model, {"text": ["hello world", "goodbye"]})
    result = (await resp.json())["result"]
    assert result["shape"] == [2, dims] and result["pooling"] == "mean"
    for vector in result["data"]:
        assert len(vector) == dims
        assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-4)


async def test_embeddings_batch_independence_and_similarity(emulator: Emulator) -> None:
    model = "@cf/baai/bge-base-en-v1.5"
    alone = (await (await emulator.run(model, {"text": "the cat sat on the mat"})).json())["result"]["data"][
        0
    ]
    batch = (
        await (
            await emulator.run(
                model,
                {
                    "text": [
                        "stock markets fell sharply",
                        "the cat sat on the mat",
                        "a cat on a mat",
                        "quantum chromodynamics",
                    ]
                },
            )
        ).json()
    )["result"]["data"]
    assert batch[1] == alone
    v = np.array(batch)
    assert v[1] @ v[2] > v[1] @ v[0]
    assert v[1] @ v[2] > v[1] @ v[3]


async def test_embeddings_over_100_texts_is_5006(emulator: Emulator) -> None:
    resp = await emulator.run("@cf/baai/bge-small-en-v1.5", {"text": ["x"] * 101})
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["code"] == 5006


@pytest.mark.parametrize(
    "model",
    [
        "@cf/stabilityai/stable-diffusion-xl-base-1.0",
        "@cf/bytedance/stable-diffusion-xl-lightning",
        "@cf/lykon/dreamshaper-8-lcm",
    ],
)
async def test_text_to_image_png(emulator: Emulator, model: str) -> None:
    resp = await emulator.run(model, {"prompt": "a red fox", "width": 320, "height": 256})
    assert resp.status == 200 and resp.content_type == "image/png"
    data = await resp.read()
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.size == (320, 256)
    other = await (await emulator.run(model, {"prompt": "a blue whale", "width": 320, "height": 256})).read()
    assert other != data


async def test_text_to_image_default_size(emulator: Emulator) -> None:
    resp = await emulator.run("@cf/stabilityai/stable-diffusion-xl-base-1.0", {"prompt": "a cat"})
    image = Image.open(io.BytesIO(await resp.read()))
    assert image.size == (1024, 1024)


async def test_img2img_and_inpainting_need_their_images(emulator: Emulator) -> None:
    img2img = await emulator.run("@cf/runwayml/stable-diffusion-v1-5-img2img", {"prompt": "x"})
    assert img2img.status == 400 and (await img2img.json())["errors"][0]["code"] == 5006
    inpaint = await emulator.run(
        "@cf/runwayml/stable-diffusion-v1-5-inpainting", {"prompt": "x", "image": [1, 2, 3]}
    )
    assert inpaint.status == 400
    ok = await emulator.run(
        "@cf/runwayml/stable-diffusion-v1-5-inpainting",
        {"prompt": "x", "image": [1, 2, 3], "mask": [0, 1], "width": 256, "height": 256},
    )
    assert ok.status == 200 and ok.content_type == "image/png"


def _check_words_and_vtt(result: dict, duration: float) -> None:
    words = result["words"]
    assert result["word_count"] == len(words) > 0
    assert result["text"] == " ".join(w["word"] for w in words)
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w["start"] < w["end"] <= duration + 1e-6 for w in words)
    vtt = result["vtt"]
    assert vtt.startswith("WEBVTT\n\n")
    # Cloudflare's short cue times: bare seconds under a minute (the whisper-vtt-short-timestamps quirk).
    cues = re.findall(r"((?:\d\d:){0,2}\d\d\.\d{3}) --> ((?:\d\d:){0,2}\d\d\.\d{3})\n(.+)", vtt)
    assert " ".join(c[2] for c in cues) == result["text"]


@pytest.mark.parametrize("model", guide.SPEECH_MODELS)
async def test_whisper_raw_audio_body(emulator: Emulator, model: str) -> None:
    audio = wav_bytes(4.0)
    resp = await emulator.run(model, data=audio, headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200
    result = (await resp.json())["result"]
    _check_words_and_vtt(result, 4.0)


async def test_whisper_length_follows_duration_and_json_array_input(emulator: Emulator) -> None:
    short = (
        await (
            await emulator.run(
                "@cf/openai/whisper", data=wav_bytes(2.0), headers={"Content-Type": "audio/wav"}
            )
        ).json()
    )["result"]
    long = (await (await emulator.run("@cf/openai/whisper", {"audio": list(wav_bytes(8.0))})).json())[
        "result"
    ]
    assert long["word_count"] > 2 * short["word_count"]
    _check_words_and_vtt(long, 8.0)


@pytest.mark.parametrize(
    ("data", "ctype"),
    [
        (b"", "application/octet-stream"),
        (b"\x89PNG\r\n\x1a\n" + b"0" * 2000, "image/png"),
        (b'{"hello": "world"}', "text/plain"),
    ],
)
async def test_whisper_rejects_non_audio(emulator: Emulator, data: bytes, ctype: str) -> None:
    resp = await emulator.run("@cf/openai/whisper", data=data, headers={"Content-Type": ctype})
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["code"] == 5006


SCRIPTS = {
    "ru": r"[\u0400-\u04FF]",
    "ja": r"[\u3040-\u30FF\u4E00-\u9FFF]",
    "zh": r"[\u4E00-\u9FFF]",
    "ar": r"[\u0600-\u06FF]",
    "he": r"[\u0590-\u05FF]",
    "th": r"[\u0E00-\u0E7F]",
    "ko": r"[\uAC00-\uD7AF]",
    "hi": r"[\u0900-\u097F]",
    "el": r"[\u0370-\u03FF]",
    "uk": r"[\u0400-\u04FF]",
    "fr": r"[a-zA-Z]",
}


@pytest.mark.parametrize("lang", sorted(SCRIPTS))
async def test_m2m100_translates_into_target_script(emulator: Emulator, lang: str) -> None:
    text = "The weather is lovely today and we are going to the beach."
    resp = await emulator.run(
        "@cf/meta/m2m100-1.2b", {"text": text, "source_lang": "en", "target_lang": lang}
    )
    assert resp.status == 200
    translated = (await resp.json())["result"]["translated_text"]
    letters = [c for c in translated if c.isalpha()]
    assert letters
    share = sum(bool(re.match(SCRIPTS[lang], c)) for c in letters) / len(letters)
    assert share > 0.8, (lang, translated)


async def test_m2m100_unsupported_language(emulator: Emulator) -> None:
    resp = await emulator.run("@cf/meta/m2m100-1.2b", {"text": "hello", "target_lang": "xx"})
    assert resp.status == 400
    error = (await resp.json())["errors"][0]
    assert error["code"] == 5006 and "xx" in error["message"]


async def test_same_request_same_bytes_on_repeat(emulator: Emulator) -> None:
    bodies = [
        await (
            await emulator.run(
                "@cf/stabilityai/stable-diffusion-xl-base-1.0",
                {"prompt": "same", "width": 256, "height": 256},
            )
        ).read()
        for _ in range(2)
    ]
    assert bodies[0] == bodies[1]
    assert AUTH
