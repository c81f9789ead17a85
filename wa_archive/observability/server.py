"""The worker's small HTTP server on WA_ARCHIVE_METRICS_PORT: /metrics (the archive's and Temporal's
SDK metrics), /healthz (the process answers) and /readyz (Temporal, PostgreSQL and the store answer).

It serves no archive data: no message, number or token is in any answer, which is why it has no
authentication (keep the port inside the deployment's network all the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import asyncpg
import structlog
from aiohttp import web
from temporalio.client import Client

from wa_archive.config import Settings
from wa_archive.observability.gauges import run_refresher
from wa_archive.observability.metrics import registry_text
from wa_archive.observability.readiness import dependency_report, readiness_body
from wa_archive.observability.temporal_sdk import TemporalMetrics
from wa_archive.storage import ObjectStore

log = structlog.get_logger("wa_archive.metrics")
# The SDK's buffer is drained this often between scrapes, so a slow scraper cannot let it overflow.
DRAIN_EVERY = 5.0


@dataclass(frozen=True)
class WorkerHealthDeps:
    client: Client
    pool: asyncpg.Pool
    store: ObjectStore


HEALTH_DEPS = web.AppKey("health_deps", WorkerHealthDeps)


async def metrics_handler(_: web.Request) -> web.Response:
    body, content_type = registry_text()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    deps = request.app[HEALTH_DEPS]
    body, status = readiness_body(await dependency_report(deps.client, deps.pool, deps.store))
    return web.json_response(body, status=status)


def health_app(deps: WorkerHealthDeps) -> web.Application:
    app = web.Application()
    app[HEALTH_DEPS] = deps
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app


async def _drain_forever(collector: TemporalMetrics) -> None:
    while True:
        await asyncio.sleep(DRAIN_EVERY)
        collector.drain()


@asynccontextmanager
async def worker_metrics(settings: Settings, deps: WorkerHealthDeps,
                         collector: TemporalMetrics | None) -> AsyncIterator[int | None]:
    """Serve the worker's health and metrics port while inside; yields the port bound (None: off)."""
    if settings.metrics_port is None:
        yield None
        return
    runner = web.AppRunner(health_app(deps), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port)
    tasks = [asyncio.create_task(run_refresher(deps.pool, deps.client, settings))]
    if collector is not None:
        tasks.append(asyncio.create_task(_drain_forever(collector)))
    try:
        await site.start()
        port = runner.addresses[0][1]
        log.info("metrics_listening", host=settings.metrics_host, port=port)
        yield port
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
