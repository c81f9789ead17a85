"""GET /api/v1/openapi.json: the OpenAPI 3.1 description of this server's HTTP API.

The document is the checked-in webhook/openapi.json, served as it is. It holds no archived data, so
anyone may read it. tests/test_openapi.py keeps it true: it validates as OpenAPI 3.1, it names
exactly the routes the application registers (outside the HTML pages), and real answers match the
schemas it gives for their status codes.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from aiohttp import web

OPENAPI_PATH = "/api/v1/openapi.json"


@cache
def document() -> bytes:
    """The document's bytes, read once (it ships inside the package)."""
    return files("webhook").joinpath("openapi.json").read_bytes()


async def openapi_document(_: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/json", charset="utf-8")


def add_routes(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, openapi_document)
