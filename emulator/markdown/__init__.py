"""toMarkdown: the formats the emulator converts and the converters themselves (pure functions of bytes)."""
