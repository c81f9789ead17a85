"""Whether a process's dependencies answer: Temporal, PostgreSQL and the object store. The webhook
server's /readyz and the worker's use the same checks."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import structlog
from temporalio.client import Client

from wa_archive.db import ping
from wa_archive.storage import ObjectStore

log = structlog.get_logger("wa_archive.readiness")


async def dependency_report(client: Client, pool: asyncpg.Pool, store: ObjectStore) -> dict[str, str]:
    """"ok" or "down" per dependency. The reason (hosts, addresses, exception text) goes to the log
    only: anyone who can reach a health port may ask."""
    checks = {
        "temporal": client.service_client.check_health(timeout=timedelta(seconds=3)),
        "postgres": ping(pool, timeout=3),
        "storage": store.ping(),
    }
    results = await asyncio.gather(*(asyncio.wait_for(c, 5) for c in checks.values()), return_exceptions=True)
    report = {}
    for name, result in zip(checks, results, strict=True):
        report[name] = "down" if isinstance(result, BaseException) else "ok"
        if isinstance(result, BaseException):
            log.warning("dependency_down", dependency=name, error=repr(result))
    return report


def readiness_body(report: dict[str, str]) -> tuple[dict[str, object], int]:
    """The JSON answer and its status: 200 when everything is up, 503 naming what is down."""
    ready = all(state == "ok" for state in report.values())
    return {"status": "ready" if ready else "not ready", "checks": report}, 200 if ready else 503
