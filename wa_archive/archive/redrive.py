"""The self-healing intake: deliveries stored but never handed to Temporal are handed over here.

The webhook stores a delivery's bytes before it starts the delivery's work in Temporal, and answers
503 when that start fails (Temporal down). Meta redelivers, but only for so long; the bytes are ours
already, so the re-drive does not wait. Each delivery found is handed to its IngestDelivery workflow
(id derived from the delivery's SHA-256), which runs the same fan-out as a redelivery would: a
message already archived or disposed of is skipped there, a running workflow is joined. So a
re-drive racing the webhook's own hand-off, or another re-drive, changes nothing; the grace period
only spares Temporal the needless starts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import structlog
from temporalio.client import Client

from wa_archive.archive.starter import start_ingest_delivery
from wa_archive.db import handoffs
from wa_archive.models import RedriveReport

log = structlog.get_logger("wa_archive.redrive")


async def redrive(pool: asyncpg.Pool, client: Client, *, now: datetime, grace: timedelta, batch: int,
                  task_queue: str, rpc_timeout: timedelta | None = None) -> RedriveReport:
    """Hand over the oldest `batch` deliveries stored before `now - grace` and not handed over yet,
    record each hand-off and the run; returns what was re-driven."""
    cutoff = now - grace
    found = await handoffs.awaiting_handoff(pool, cutoff=cutoff, limit=batch)
    redriven: list[str] = []
    failed: list[str] = []
    for delivery in found:
        try:
            await start_ingest_delivery(client, delivery.sha256, task_queue=task_queue, rpc_timeout=rpc_timeout)
            await handoffs.record_handoff(pool, delivery.sha256, "redrive")
        except Exception as exc:  # noqa: BLE001 - one delivery's failure must not stop the others
            log.error("redrive_failed", delivery=delivery.sha256, error=repr(exc))
            failed.append(delivery.sha256)
            continue
        redriven.append(delivery.sha256)
    more = len(found) == batch
    # Everything received before the horizon is handed over, so the next run's scan starts there.
    if failed:
        horizon = min(d.received_at for d in found if d.sha256 in failed)
    elif more:
        horizon = found[-1].received_at
    else:
        horizon = cutoff
    await handoffs.record_redrive_run(pool, horizon=horizon, redriven=redriven, failed=failed, more=more)
    report = RedriveReport(redriven=redriven, failed=failed, more=more, cutoff=cutoff)
    if redriven or failed:
        log.warning("deliveries_redriven", redriven=redriven, failed=failed, more=more)
    return report
