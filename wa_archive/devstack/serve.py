"""Running the HTTP server (webhook + health) as a long-lived process."""

from __future__ import annotations

import asyncio
import logging

import structlog
from aiohttp import web

from wa_archive.config import Settings
from wa_archive.devstack.runtime import connect_db
from wa_archive.logs import AccessLogger
from wa_archive.storage.posture import open_checked_store
from wa_archive.temporal.client import connect_temporal
from webhook.app import WebhookDeps, create_app

log = structlog.get_logger("wa_archive.serve")


async def start_http(settings: Settings) -> tuple[web.AppRunner, WebhookDeps]:
    """Connect dependencies and start listening; the caller stops the runner and closes deps."""
    settings.require("meta_app_secret", "meta_verify_token")
    # Lazy: the server starts (and answers 503) even while Temporal is down.
    client = await connect_temporal(settings, lazy=True)
    pool = await connect_db(settings)
    try:
        store = await open_checked_store(settings, pool, "serve", must_reach=False)
    except BaseException:
        await pool.close()
        raise
    deps = WebhookDeps(settings=settings, client=client, pool=pool, store=store)
    # The access log names route patterns only (wa_archive.logs.AccessLogger), never paths or queries.
    access_log = logging.getLogger("aiohttp.access") if settings.http_access_log else None
    runner = web.AppRunner(create_app(deps), access_log_class=AccessLogger, access_log=access_log)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("http_listening", host=settings.http_host, port=settings.http_port)
    return runner, deps


async def stop_http(runner: web.AppRunner, deps: WebhookDeps) -> None:
    await runner.cleanup()
    await deps.pool.close()
    await deps.store.close()


async def serve_forever(settings: Settings, stop: asyncio.Event) -> None:
    runner, deps = await start_http(settings)
    try:
        await stop.wait()
    finally:
        await stop_http(runner, deps)
