"""Text Classification: distilbert's bare `[{label, score}]` (NEGATIVE then POSITIVE) and the bge reranker.

The reranker (`@cf/baai/bge-reranker-base`) is catalogued under this task but answers
`{response: [{id, score}]}` sorted by score, cut to `top_k`; scores follow word overlap with the query.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator.call import Call, Outcome, Usage
from emulator.fakes import text as text_fake
from emulator.fakes import tokens as tokenizer
from emulator.fakes.seed import derive_seed, rng
from emulator.tasks import FakeContext, register

LABELS = ("NEGATIVE", "POSITIVE")


def _words(text: str) -> set[str]:
    return {w.strip(".,;:!?\"'()").lower() for w in text.split() if w.strip(".,;:!?\"'()")}


def rerank_scores(query: str, contexts: list[str], seed: int) -> list[float]:
    """Overlap-driven relevance in (0, 1): contexts sharing the query's words score higher."""
    q = _words(query)
    out = []
    for i, context in enumerate(contexts):
        c = _words(context)
        overlap = len(q & c) / max(1, len(q))
        jitter = float(rng(derive_seed(seed, i)).uniform(0.0, 0.05))
        out.append(round(min(0.999, 0.02 + 0.9 * overlap + jitter), 6))
    return out


def rerank(inputs: dict[str, Any], seed: int) -> tuple[list[dict[str, Any]], int]:
    items = inputs.get("contexts") or []
    contexts = [str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in items]
    query = str(inputs.get("query", ""))
    scores = rerank_scores(query, contexts, seed)
    ranked = sorted(({"id": i, "score": s} for i, s in enumerate(scores)),
                    key=lambda r: (-r["score"], r["id"]))
    top_k = inputs.get("top_k")
    if isinstance(top_k, int) and top_k >= 1:
        ranked = ranked[:top_k]
    tokens = (text_fake.count_tokens(query) * max(1, len(contexts))
              + sum(text_fake.count_tokens(c) for c in contexts))
    return ranked, tokens


@register("Text Classification")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    inputs = call.json_inputs
    if "contexts" in inputs or "reranker" in call.model.name:
        ranked, tokens = rerank(inputs, ctx.seed)
        return Outcome(result={"response": ranked}, usage=Usage(input_tokens=tokens))
    text = str(inputs.get("text", ""))
    # float32 softmax outputs widened to double, as in the real answer
    # (fixtures/real/run-classify-translate-notebook.json).
    positive = np.float32(rng(ctx.seed).uniform(0.0005, 0.9995))
    result = [{"label": LABELS[0], "score": float(np.float32(1.0) - positive)},
              {"label": LABELS[1], "score": float(positive)}]
    return Outcome(result=result, usage=Usage(input_tokens=tokenizer.encoder_tokens(call.model.name, [text])))
