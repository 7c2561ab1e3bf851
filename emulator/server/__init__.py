"""The aiohttp server: path dispatch, edge checks, the call pipeline and rendering per surface."""
