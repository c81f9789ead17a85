"""What every handler needs: the shared dependencies of the app, and JSON errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from temporalio.client import Client

from wa_archive.config import Settings
from wa_archive.graph import GraphClient
from wa_archive.models import ArchiveOptions, OutboundOptions
from wa_archive.storage import ObjectStore


@dataclass
class WebhookDeps:
    settings: Settings
    client: Client
    pool: asyncpg.Pool
    store: ObjectStore
    contact_secret: str = field(default="", repr=False)
    graph: GraphClient | None = None  # for the send proxy; made at startup when not given
    # Built once from the settings rather than on every request.
    archive_options: ArchiveOptions = field(init=False)
    outbound_options: OutboundOptions = field(init=False)

    def __post_init__(self) -> None:
        self.archive_options = self.settings.archive_options()
        self.outbound_options = self.settings.outbound_options()


DEPS = web.AppKey("deps", WebhookDeps)


def deps_of(request: web.Request) -> WebhookDeps:
    return request.app[DEPS]


def pool_of(request: web.Request) -> asyncpg.Pool:
    return request.app[DEPS].pool


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)
