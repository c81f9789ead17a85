"""The webhook and health HTTP server (aiohttp)."""
