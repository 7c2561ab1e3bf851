"""Request validation: JSON Schema checks that answer in Cloudflare's 5006 wording."""

from emulator.validation.schema import CompiledSchema, compile_schema, json_type

__all__ = ["CompiledSchema", "compile_schema", "json_type"]
