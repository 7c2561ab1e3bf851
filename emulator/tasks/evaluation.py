"""Clef evaluation models (task "Text Generation"): `{model, answers{id: noul|choice|score}, usage}`.

Each question id of the request gets an answer of its own type; probabilities sum to 1 and the
chosen option is the most probable one.
"""

from __future__ import annotations

from typing import Any

import orjson

from emulator.call import Call, Outcome, Usage
from emulator.fakes import text as text_fake
from emulator.fakes.seed import derive_seed, rng
from emulator.tasks import FakeContext


def _options(question: dict[str, Any]) -> list[str]:
    criteria = question.get("criteria")
    if isinstance(criteria, dict) and criteria:
        return [str(k) for k in criteria]
    if isinstance(criteria, list) and criteria:
        return [str(i) for i in range(len(criteria))]
    return ["0", "1", "2"]


def answer(question: Any, seed: int) -> dict[str, Any]:
    gen = rng(seed)
    kind = question.get("type", "noul") if isinstance(question, dict) else "noul"
    if kind not in ("choice", "score"):
        return {"type": "noul", "noul": round(float(gen.uniform(0, 1)), 6)}
    options = _options(question)
    weights = [round(float(w), 6) for w in gen.dirichlet([1.0] * len(options))]
    probabilities = dict(zip(options, weights, strict=True))
    best = max(options, key=lambda o: probabilities[o])
    confidence = round(probabilities[best], 6)
    if kind == "choice":
        return {"type": "choice", "choice": best, "probabilities": probabilities, "confidence": confidence}
    levels = list(range(len(options)))
    score = round(sum(level * weights[level] for level in levels), 6)
    legend = {str(level): option for level, option in zip(levels, options, strict=True)}
    return {"type": "score", "score": score, "legend": legend,
            "probabilities": {str(level): weights[level] for level in levels}, "confidence": confidence}


def fake(call: Call, ctx: FakeContext) -> Outcome:
    inputs = call.json_inputs
    given = inputs.get("questions")
    questions: dict[str, Any] = given if isinstance(given, dict) else {}
    answers = {qid: answer(q, derive_seed(ctx.seed, qid)) for qid, q in questions.items()}
    input_tokens = text_fake.count_tokens(orjson.dumps(inputs.get("state", "")).decode()) + sum(
        text_fake.count_tokens(orjson.dumps(q).decode()) for q in questions.values())
    usage = {"input_tokens": max(1, input_tokens), "output_tokens": 4 * len(answers)}
    model = call.model.name.rsplit("/", 1)[-1]
    return Outcome(result={"model": model, "answers": answers, "usage": usage},
                   usage=Usage(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"]))
