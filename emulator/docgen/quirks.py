"""Renders the quirks table (emulator/quirks.py) as docs/quirks.md and as `quirks` command text."""

from __future__ import annotations

from emulator.quirks import INFERENCES, QUIRKS, enabled

DOC_PATH = "docs/quirks.md"


def markdown() -> str:
    """docs/quirks.md, byte for byte (a test keeps the file equal to this)."""
    lines = [
        "# Cloudflare quirks the emulator reproduces",
        "",
        "<!-- Generated from emulator/quirks.py by `workers-ai-emulator quirks --markdown`; do not edit. -->",
        "",
        "Every quirk is ON by default, so tests see what production does. Turn one off with",
        "`workers-ai-emulator serve --quirk NAME=off` (repeatable, or comma-separated), or the",
        "`quirks` setting (`{\"NAME\": false}`).",
        "",
    ]
    for quirk in QUIRKS.values():
        lines += [f"## `{quirk.name}`", "", f"- **On (default):** {quirk.behaviour}",
                  f"- **Off:** {quirk.when_off}", f"- **Evidence:** {quirk.evidence}", ""]
    lines += ["## Undocumented behaviour the emulator infers", "",
              "Where Cloudflare documents no answer, the emulator follows the documented behaviour nearest",
              "to it. These choices have no switch; each says what it follows.", ""]
    for inference in INFERENCES:
        lines.append(f"- **{inference.surface}:** {inference.behaviour} _Basis:_ {inference.basis}.")
    lines.append("")
    return "\n".join(lines)


def table(overrides: dict[str, bool] | None = None) -> str:
    """A plain-text listing: name, state, behaviour while on, behaviour when off."""
    overrides = overrides or {}
    out = []
    for quirk in QUIRKS.values():
        state = "on" if enabled(overrides, quirk.name) else "off"
        out += [f"{quirk.name}  [{state}]", f"    on:  {quirk.behaviour}", f"    off: {quirk.when_off}",
                f"    evidence: {quirk.evidence}", ""]
    return "\n".join(out)
