"""One module per catalog task; each turns a `Call` into a deterministic `Outcome`.

A task module exposes `fake(call, ctx) -> Outcome`. `FAKES` maps the catalog's task names to them;
`fake_for(model)` is the single lookup the mock backend uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.call import Call, Outcome
from emulator.catalog import Model
from emulator.tasks import generic


@dataclass(slots=True)
class FakeContext:
    """What a fake may depend on besides the call: the request seed and the quirk switches."""

    seed: int  # derived from (emulator seed, model, canonical inputs)
    emulator_seed: int = 0
    quirks: dict[str, bool] = field(default_factory=dict)


Fake = Callable[[Call, FakeContext], Outcome]
FAKES: dict[str, Fake] = {}


def register(*task_names: str) -> Callable[[Fake], Fake]:
    def decorator(fn: Fake) -> Fake:
        for name in task_names:
            FAKES[name] = fn
        return fn

    return decorator


def fake_for(model: Model) -> Fake:
    load_all()
    try:
        return FAKES[model.task.name]
    except KeyError:
        return generic.fake


_loaded: list[bool] = []


def load_all() -> None:
    """Import every task module, so each registers its fake (the server does it before listening:
    ~0.1 s of imports that would otherwise hold the event loop during the first model call)."""
    # A flag, not `if FAKES`: importing one task module early (e.g. text_generation for its
    # Generation type) registers it and must not stop the others from loading.
    if _loaded:
        return
    _loaded.append(True)
    import importlib
    import pkgutil

    import emulator.tasks as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"emulator.tasks.{info.name}")
