"""Text Embeddings: unit-norm vectors where texts sharing words are closer; one vector per text."""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator.call import Call, Outcome, Usage
from emulator.catalog import Model
from emulator.fakes import text as text_fake
from emulator.fakes import tokens
from emulator.fakes.vectors import embed, wire_rows
from emulator.limits import EMBEDDING_INPUT_KEYS, max_input_tokens
from emulator.tasks import FakeContext, register

# Dimensions for models whose catalog entry has no `output_dimensions` property.
KNOWN_DIMENSIONS = {
    "@cf/baai/bge-small-en-v1.5": 384,
    "@cf/baai/bge-base-en-v1.5": 768,
    "@cf/baai/bge-large-en-v1.5": 1024,
    "@cf/baai/bge-m3": 1024,
    "@cf/baai/omni-bge-base-en-v1.5": 768,
    "@cf/google/embeddinggemma-300m": 768,
    "@cf/pfnet/plamo-embedding-1b": 2048,
    "@cf/qwen/qwen3-embedding-0.6b": 1024,
}
DEFAULT_DIMENSIONS = 768


def dimensions(model: Model) -> int:
    declared = model.prop("output_dimensions")
    if declared is not None and str(declared).isdigit():
        return int(declared)
    return KNOWN_DIMENSIONS.get(model.name, DEFAULT_DIMENSIONS)


def texts_of(inputs: dict[str, Any]) -> list[str]:
    for key in EMBEDDING_INPUT_KEYS:
        value = inputs.get(key)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [v if isinstance(v, str) else str(v) for v in value]
    return []


def vectors(model: Model, texts: list[str], ctx: FakeContext) -> np.ndarray:
    """One float64 row per text (vectors.wire_rows): rendered by orjson as the JSON float lists."""
    return wire_rows(embed(texts, dimensions(model), salt=ctx.emulator_seed))


def usage_for(model: Model, texts: list[str]) -> Usage:
    return Usage(input_tokens=tokens.encoder_tokens(model.name, texts))


# Answer shapes as observed (fixtures/observations/binding-results-observed-2026-10.json): bge-m3 answers
# `{data, shape, pooling: "cls", response: null}` (billing appends `meta`); the bge-*-en models add the
# pooling they used and a `usage`; the rest answer their schema's `{data, shape}` (usage added by
# billing where the model reports neurons).
CLS_POOLING_MODELS = frozenset({"@cf/baai/bge-m3"})


def _declares_pooling(model: Model) -> bool:
    return "pooling" in (model.input_schema.get("oneOf") or [{}])[0].get("properties", {})


def _data_first(model: Model) -> bool:
    """Key order: the captured bge-m3 answer and the newer schemas list `data` before `shape`."""
    if model.name in CLS_POOLING_MODELS:
        return True
    props = list(model.output_schema.get("properties") or {})
    return bool(props) and props[0] == "data"


def result_for(model: Model, inputs: dict[str, Any], data: Any, usage: Usage) -> dict[str, Any]:
    shape = [len(data), dimensions(model)]
    result: dict[str, Any] = {"data": data, "shape": shape} if _data_first(model) else {
        "shape": shape, "data": data}
    if model.name in CLS_POOLING_MODELS:
        result["pooling"] = "cls"
        result["response"] = None
    elif _declares_pooling(model):
        result["pooling"] = inputs.get("pooling", "mean")
        result["usage"] = {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}
    return result


@register("Text Embeddings")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    inputs = call.json_inputs
    texts = texts_of(inputs)
    limit = max_input_tokens(call)
    if limit is not None:
        # Longer texts were refused (limits.check_input_tokens) unless `truncate_inputs` asked for this.
        texts = [t[: limit * text_fake.CHARS_PER_TOKEN] for t in texts]
    usage = usage_for(call.model, texts)
    return Outcome(result=result_for(call.model, inputs, vectors(call.model, texts, ctx), usage), usage=usage)
