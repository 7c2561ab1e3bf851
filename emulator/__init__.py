"""workers-ai-emulator: a local, deterministic emulator of the Cloudflare Workers AI REST API."""

__version__ = "0.1.0"
