"""A call's seed is worked out once and reused (the backend and the OpenAI renderer both need it), but
never outlives the inputs it was worked out from."""

from __future__ import annotations

from emulator.backends.mock import call_seed, fingerprint_inputs
from emulator.call import Call
from emulator.catalog import load_catalog
from emulator.fakes.seed import derive_seed

MODEL = "@cf/meta/llama-3.1-8b-instruct"


def _fresh(call: Call, emulator_seed: int) -> int:
    return derive_seed(emulator_seed, call.model.name, fingerprint_inputs(call.inputs))


def test_the_seed_follows_the_inputs_and_the_emulator_seed() -> None:
    model = load_catalog().get(MODEL)
    assert model is not None
    call = Call(model=model, inputs={"prompt": "one"})
    first = call_seed(call, 0)
    assert first == _fresh(call, 0) and call_seed(call, 0) == first
    assert call_seed(call, 7) == _fresh(call, 7) != first
    call.inputs = {"prompt": "two"}  # a new inputs object: the kept seed does not apply
    assert call_seed(call, 0) == _fresh(call, 0) != first
