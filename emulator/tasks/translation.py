"""Translation: `{translated_text}` (m2m100) in the target language's script, as long as the input."""

from __future__ import annotations

from emulator.call import Call, Outcome, Usage
from emulator.errors import CFError, ErrorKind
from emulator.fakes import tokens as tokenizer
from emulator.fakes.translation import translate, translate_indic
from emulator.tasks import FakeContext, register


@register("Translation")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    inputs = call.json_inputs
    if "target_language" in inputs or "indictrans" in call.model.name:
        texts = inputs.get("text", "")
        items = texts if isinstance(texts, list) else [texts]
        target = inputs.get("target_language", "hin_Deva")
        out = [translate_indic(t, target, ctx.seed) for t in items]
        usage = Usage(
            input_tokens=tokenizer.encoder_tokens(call.model.name, [str(t) for t in items]),
            output_tokens=tokenizer.encoder_tokens(call.model.name, out),
        )
        return Outcome(result={"translations": out}, usage=usage)
    text = inputs["text"]
    source = inputs.get("source_lang", "en")
    target = inputs["target_lang"]
    try:
        translated = translate(text, source, target, ctx.seed)
    except ValueError as exc:
        raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: {exc}") from None
    usage = Usage(input_tokens=tokenizer.encoder_tokens(call.model.name, [text]),
                  output_tokens=tokenizer.encoder_tokens(call.model.name, [translated]))
    return Outcome(result={"translated_text": translated}, usage=usage)
