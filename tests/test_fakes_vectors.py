"""Tests for the fake embedding vectors."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.fakes import vectors
from emulator.fakes.vectors import embed, wire_rows

TEXTS = [
    "The cat sat on the mat",
    "A cat was sitting on a mat today",
    "Quarterly revenue grew strongly in Europe",
    "Embedding models map text to vectors",
    "",
]


@pytest.mark.parametrize("dims", [384, 768, 1024, 100, 3])
def test_shape_dtype_unit_norm(dims: int) -> None:
    out = embed(TEXTS, dims)
    assert out.shape == (len(TEXTS), dims)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(out))


def test_deterministic_bytes() -> None:
    assert embed(TEXTS, 768).tobytes() == embed(list(TEXTS), 768).tobytes()


def test_row_does_not_depend_on_batch() -> None:
    alone = np.stack([embed([text], 1024)[0] for text in TEXTS])
    batched = embed(TEXTS, 1024)
    shuffled = embed([*TEXTS[::-1], "something else entirely " * 40], 1024)[: len(TEXTS)][::-1]
    assert alone.tobytes() == batched.tobytes() == shuffled.tobytes()


def test_shared_words_are_closer_than_unrelated() -> None:
    cat, cat2, revenue, embedding, _ = embed(TEXTS, 768)
    assert cat @ cat2 > cat @ revenue + 0.15
    assert cat @ cat2 > cat @ embedding + 0.15
    # Anisotropic like real models: unrelated texts are not orthogonal.
    assert 0.05 < revenue @ embedding < 0.7


def test_case_and_inflection() -> None:
    texts = ["Embedding vectors", "embedding VECTORS", "embeddings vectorised", "banana split"]
    a, b, c, d = embed(texts, 384)
    assert a @ b > 0.9
    assert a @ c > a @ d


def test_salt_and_dims_change_vectors() -> None:
    base = embed(TEXTS, 384)
    salted = embed(TEXTS, 384, salt=7)
    assert not np.allclose(base, salted)
    np.testing.assert_allclose(np.linalg.norm(salted, axis=1), 1.0, atol=1e-5)
    assert embed(TEXTS, 384, salt=7).tobytes() == salted.tobytes()


def test_empty_inputs() -> None:
    assert embed([], 384).shape == (0, 384)
    empty = embed([""], 384)[0]
    assert abs(float(np.linalg.norm(empty)) - 1.0) < 1e-5
    with pytest.raises(ValueError):
        embed(["x"], 0)


def test_wire_rows_render_as_the_float32_values_widened_to_doubles() -> None:
    matrix = embed(TEXTS[:2], 384)
    rows = wire_rows(matrix)
    assert rows.shape == (2, 384) and rows.dtype == np.float64 and rows.flags["C_CONTIGUOUS"]
    assert np.array_equal(rows.astype(np.float32), matrix)
    # The oracle: Python floats of the float32 values, as json would write them.
    as_lists = [[float(v) for v in row] for row in matrix]
    assert orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY) == orjson.dumps(as_lists)
    assert json.loads(orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY)) == as_lists


def test_whole_texts_are_not_kept_in_the_token_table() -> None:
    # One row per distinct word or stem; a long run of distinct texts over a small vocabulary must not
    # add a row per text (the table once grew by one 1 KiB row for every text ever embedded).
    table = vectors._table(vectors._latent_dims(1024))
    embed(["warm up the table"], 1024)
    before = table.size
    texts = [f"alpha beta gamma {i % 7}" for i in range(2_000)]
    embed(texts, 1024)
    assert table.size - before <= 3 + 7 + 1  # alpha, beta, gamma, seven digits, and a stem at most
    # Rows still depend on the whole text: same words in another order give another vector.
    a, b = embed(["dog bites man", "man bites dog"], 1024)
    assert a.tobytes() != b.tobytes()


# ---------------------------------------------------------------- long inputs, a slice at a time

_PIECE_ALPHABET = st.sampled_from(["a", "b", " ", "  ", "\n", "1", "_", "!", "é", "日", " x", "Word"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_PIECE_ALPHABET, max_size=400).map("".join), st.integers(1, 40))
def test_findall_in_slices_equals_one_findall(text: str, slice_chars: int) -> None:
    import re

    from emulator.fakes import tokens

    original = tokens.SLICE_CHARS
    tokens.SLICE_CHARS = slice_chars
    try:
        for pattern in (tokens._PIECES, re.compile(r"\w+")):
            assert tokens.findall_in_slices(pattern, text) == pattern.findall(text)
    finally:
        tokens.SLICE_CHARS = original


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["alpha", "embedding", "embedded", "cat", "x", "日本", "42"]),
                         max_size=300).map(" ".join), min_size=1, max_size=4),
       st.sampled_from([1024, 384, 100]), st.integers(2, 50))
def test_texts_embedded_in_slices_get_the_one_step_bytes(texts: list[str], dims: int, rows: int) -> None:
    """fakes/vectors.py embeds a large batch one text and a slice of rows at a time: the same bits."""
    from emulator.fakes import vectors

    one_step = vectors.embed(texts, dims, salt=7)
    saved = vectors._ONE_STEP_ROWS, vectors._SLICE_ROWS, vectors._ONE_STEP_CHARS
    vectors._ONE_STEP_ROWS, vectors._SLICE_ROWS, vectors._ONE_STEP_CHARS = 4, rows, 10
    try:
        sliced = vectors.embed(texts, dims, salt=7)
    finally:
        vectors._ONE_STEP_ROWS, vectors._SLICE_ROWS, vectors._ONE_STEP_CHARS = saved
    assert sliced.tobytes() == one_step.tobytes()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["alpha", "embedding", "cat", "日本", "42", "x"]), max_size=60)
                .map(" ".join), min_size=1, max_size=4),
       st.lists(st.integers(0, 3), max_size=6), st.booleans())
def test_a_text_repeated_in_a_batch_gets_the_row_it_gets_alone(distinct: list[str], repeats: list[int],
                                                               sliced: bool) -> None:
    """embed computes each distinct text of a batch once and the token count counts it once: the
    rows and the count are those of each text on its own, in the one-step and the sliced path."""
    from emulator.fakes import tokens, vectors

    batch = distinct + [distinct[i % len(distinct)] for i in repeats]
    saved = vectors._ONE_STEP_ROWS, vectors._SLICE_ROWS, vectors._ONE_STEP_CHARS
    if sliced:
        vectors._ONE_STEP_ROWS, vectors._SLICE_ROWS, vectors._ONE_STEP_CHARS = 4, 3, 10
    try:
        rows = vectors.embed(batch, 384, salt=3)
        alone = [vectors.embed([text], 384, salt=3)[0] for text in batch]
    finally:
        vectors._ONE_STEP_ROWS, vectors._SLICE_ROWS, vectors._ONE_STEP_CHARS = saved
    assert [row.tobytes() for row in rows] == [row.tobytes() for row in alone]
    for model in ("@cf/baai/bge-m3", "@cf/meta/llama-3.1-8b-instruct"):
        assert tokens.encoder_tokens(model, batch) == sum(tokens.encoder_tokens(model, [t]) for t in batch)


def test_gil_turns_sleep_on_a_worker_thread_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """gil.GilTurns lets go of the GIL (time.sleep(0)) once per turn on a thread without an event
    loop, never on the loop's own thread, where a sleep would stall every request."""
    import asyncio
    import threading
    import time

    from emulator import gil

    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    monkeypatch.setattr(gil, "GIL_TURN_SECONDS", 0.0)

    def ticks() -> None:
        turns = gil.GilTurns()
        for _ in range(5):
            turns.tick()

    worker = threading.Thread(target=ticks)
    worker.start()
    worker.join()
    assert sleeps == [0] * 5

    async def on_the_loop() -> None:
        ticks()

    sleeps.clear()
    asyncio.run(on_the_loop())
    assert sleeps == []
