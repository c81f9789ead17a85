"""The database-derived gauges, read on a timer (every WA_ARCHIVE_METRICS_REFRESH_SECONDS) rather than
on every scrape: however often Prometheus (or several) scrapes, the database sees one round of small
queries per interval and process.

Both the HTTP server and the worker run a refresher when they serve metrics; the values are facts of
the shared database, so replicas agree, and the alert rules take max() over them.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta, timezone

import asyncpg
import structlog
from temporalio.client import Client, WorkflowExecutionStatus

from wa_archive.config import Settings
from wa_archive.credentials import ledger_trust
from wa_archive.db import gauges as figures
from wa_archive.db import handoffs
from wa_archive.observability import metrics

log = structlog.get_logger("wa_archive.metrics")

# How long a visibility list of Disposition runs may take before the refresh gives up on it.
TEMPORAL_TIMEOUT = timedelta(seconds=5)


async def deliveries_awaiting_handoff(pool: asyncpg.Pool, settings: Settings) -> int:
    """Deliveries stored longer than the re-drive's grace and still not handed to Temporal: what the
    next Redrive run would hand over (the `delivery_handoffs` record, not a guess from messages)."""
    return await handoffs.deliveries_awaiting_handoff(pool, grace=timedelta(seconds=settings.redrive_grace_seconds))


def _unix(at: datetime | None) -> float:
    return at.timestamp() if at is not None else math.nan


async def refresh_database_gauges(pool: asyncpg.Pool, settings: Settings) -> None:
    """Read every database-derived figure once and set its gauge."""
    now = datetime.now(timezone.utc)
    read = await figures.archive_figures(pool, ledger_trust(settings))
    metrics.DELIVERIES_AWAITING_HANDOFF.set(await deliveries_awaiting_handoff(pool, settings))
    metrics.LAST_DELIVERY.set(_unix(read.last_delivery_at))
    metrics.LEDGER_TREE_SIZE.set(read.ledger_tree_size)
    metrics.LEDGER_CHECKPOINT_TREE_SIZE.set(read.checkpoint_tree_size)
    metrics.LEDGER_CHECKPOINT_AGE.set((now - read.checkpoint_at).total_seconds() if read.checkpoint_at else math.nan)
    metrics.LEDGER_UNSIGNED_AGE.set(
        max(0.0, (now - read.oldest_unsigned_leaf_at).total_seconds()) if read.oldest_unsigned_leaf_at else 0.0)
    metrics.LEDGER_CHECKPOINT_INTERVAL.set(settings.ledger_checkpoint_every)
    metrics.LEDGER_PENDING.set(read.pending_leaves)
    metrics.LEDGER_PENDING_AGE.set(
        max(0.0, (now - read.oldest_pending_at).total_seconds()) if read.oldest_pending_at else 0.0)
    metrics.LEDGER_INTEGRATE_INTERVAL.set(settings.ledger_integrate_every)
    metrics.RETRIEVAL_TEST_LAST.set(_unix(read.retrieval_finished_at))
    metrics.RETRIEVAL_TEST_OK.set(math.nan if read.retrieval_failed is None else float(read.retrieval_failed == 0))
    metrics.STORAGE_CHECK_LAST.set(_unix(read.storage_checked_at))
    metrics.STORAGE_CHECK_OK.set(math.nan if read.storage_ok is None else float(read.storage_ok))


async def refresh_disposition_gauges(client: Client, settings: Settings) -> None:
    """The last closed Disposition run on this task queue, as Temporal's visibility lists it (a run
    that removed nothing leaves no row in the database)."""
    query = (f"WorkflowType = 'Disposition' AND TaskQueue = '{settings.task_queue}'"
             " AND ExecutionStatus != 'Running'")
    async for run in client.list_workflows(query, limit=1, rpc_timeout=TEMPORAL_TIMEOUT):
        metrics.DISPOSITION_LAST.set(_unix(run.close_time))
        metrics.DISPOSITION_OK.set(float(run.status == WorkflowExecutionStatus.COMPLETED))


async def refresh_once(pool: asyncpg.Pool, client: Client | None, settings: Settings) -> None:
    """One refresh; a part that fails is counted and logged, and its gauges keep their last values."""
    try:
        await refresh_database_gauges(pool, settings)
    except Exception as exc:  # noqa: BLE001 - a metrics read must never take its process down
        metrics.GAUGE_REFRESH_ERRORS.labels("database").inc()
        log.warning("gauge_refresh_failed", part="database", error=repr(exc))
    if client is not None:
        try:
            await refresh_disposition_gauges(client, settings)
        except Exception as exc:  # noqa: BLE001 - Temporal down is reported by /readyz and its own alert
            metrics.GAUGE_REFRESH_ERRORS.labels("temporal").inc()
            log.warning("gauge_refresh_failed", part="temporal", error=repr(exc))
    metrics.GAUGES_REFRESHED.set(datetime.now(timezone.utc).timestamp())


async def run_refresher(pool: asyncpg.Pool, client: Client | None, settings: Settings) -> None:
    """Refresh at once, then every `metrics_refresh_seconds`, until cancelled."""
    while True:
        await refresh_once(pool, client, settings)
        await asyncio.sleep(settings.metrics_refresh_seconds)
