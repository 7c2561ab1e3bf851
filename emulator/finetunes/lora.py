"""`lora` on `run/` and `v1/chat/completions`: which fine-tune a request names, or Cloudflare's refusal.

Documented (https://developers.cloudflare.com/workers-ai/features/fine-tunes/loras/ and the errors
page): `lora` takes a fine-tune's name or id, only models whose catalog marks `lora` support it (5005
otherwise), and a fine-tune without both adapter files answers 3039. An unknown fine-tune answers
3037 `AiError: AiError: Finetune <id> not found (<request id>)` (seen in cloudflare/cloudflare-docs#14757
and #23272; the HTTP status is not shown there, 404 is the emulator's inference).
"""

from __future__ import annotations

from typing import Any

from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.finetunes.store import PUBLIC_MODELS, Finetune, FinetuneStore, public_finetunes


def resolve(store: FinetuneStore, account: str, model: Model, inputs: dict[str, Any], request_id: str
            ) -> Finetune | None:
    """The fine-tune `inputs["lora"]` names, after every check; None when the request has no `lora`.

    `inputs["lora"]` is replaced by the fine-tune's id, so its name and its id give the same answer
    (the seed of a fake is computed from the inputs) while the base model's answer differs.
    """
    if "lora" not in inputs:
        return None
    if not model.flag("lora"):
        raise CFError(ErrorKind.LORA_UNSUPPORTED, model=model.name)
    value = inputs["lora"]
    if not isinstance(value, str) or not value:
        kind = "null" if value is None else type(value).__name__
        raise CFError(
            ErrorKind.BAD_INPUT,
            detail=f"Error: Type mismatch of '/lora', '{kind}' not in 'string'")
    finetune = _public(value, model) or store.find(account, value)
    if finetune is None:
        raise CFError(ErrorKind.FINETUNE_NOT_FOUND, finetune=value, request_id=request_id)
    if not finetune.public:
        if finetune.model != model.name:
            # Undocumented: an adapter trained for one base model cannot apply to another.
            raise CFError(
                ErrorKind.BAD_INPUT,
                detail=f"Error: finetune {value} was created for {finetune.model},"
                       f" not {model.name}")
        if store.missing_assets(account, finetune.id):
            raise CFError(ErrorKind.FINETUNE_INCOMPLETE)
    inputs["lora"] = finetune.id
    return finetune


def _public(value: str, model: Model) -> Finetune | None:
    for finetune in public_finetunes():
        if value in (finetune.id, finetune.name):
            return finetune if model.name in PUBLIC_MODELS else None
    return None
