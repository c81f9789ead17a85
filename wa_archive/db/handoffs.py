"""Hand-offs of stored deliveries to Temporal, and the re-drive runs that catch the missing ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, TypeAlias

import asyncpg

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection
HandoffWay = Literal["webhook", "redrive"]

# A delivery stored but not handed over, as the re-drive needs it.
_AWAITING = (
    " FROM deliveries d WHERE d.received_at >= $1 AND d.received_at < $2"
    " AND NOT EXISTS (SELECT 1 FROM delivery_handoffs h WHERE h.delivery_sha256 = d.sha256)"
)


# A delivery is stamped with its arrival, but its row is visible only once it commits; a commit held up
# (a pool with no free connection, a lock, a slow disk) can land behind the horizon a run has already
# recorded. Every scan therefore reaches back at least this far before its cutoff, whatever the
# horizon says, so such a delivery is still found (the index on received_at keeps this cheap).
LATE_COMMIT_ALLOWANCE = timedelta(hours=1)


@dataclass(frozen=True)
class AwaitingDelivery:
    sha256: str
    received_at: datetime


async def record_handoff(db: Executor, delivery_sha256: str, how: HandoffWay) -> None:
    """Note that Temporal holds this delivery's work (idempotent: a repeat changes nothing)."""
    await db.execute("INSERT INTO delivery_handoffs (delivery_sha256, how) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                     delivery_sha256, how)


async def redrive_horizon(db: Executor) -> datetime:
    """Where a scan for deliveries not handed over may start: the last run's horizon (every delivery
    received before it was handed over), or the beginning of time before the first run."""
    horizon: datetime | None = await db.fetchval("SELECT horizon FROM redrive_runs ORDER BY id DESC LIMIT 1")
    return horizon or datetime(1970, 1, 1, tzinfo=timezone.utc)


async def _scan_start(db: Executor, cutoff: datetime) -> datetime:
    """Where a scan for deliveries received before `cutoff` starts: the last horizon, or earlier by
    LATE_COMMIT_ALLOWANCE so that a delivery committed late is not skipped."""
    return min(await redrive_horizon(db), cutoff - LATE_COMMIT_ALLOWANCE)


async def awaiting_handoff(db: Executor, *, cutoff: datetime, limit: int) -> list[AwaitingDelivery]:
    """The oldest deliveries received before `cutoff` and not handed over, at most `limit`."""
    rows = await db.fetch(f"SELECT d.sha256, d.received_at{_AWAITING} ORDER BY d.received_at, d.sha256 LIMIT $3",
                          await _scan_start(db, cutoff), cutoff, limit)
    return [AwaitingDelivery(r["sha256"], r["received_at"]) for r in rows]


async def deliveries_awaiting_handoff(db: Executor, *, grace: timedelta, now: datetime | None = None) -> int:
    """How many deliveries were stored more than `grace` ago and are still not handed to Temporal
    (the metric and alert "deliveries awaiting hand-off"; the re-drive's grace is
    `Settings.redrive_grace_seconds`)."""
    cutoff = (now or datetime.now(timezone.utc)) - grace
    count: int = await db.fetchval(f"SELECT count(*){_AWAITING}", await _scan_start(db, cutoff), cutoff)
    return count


async def record_redrive_run(db: Executor, *, horizon: datetime, redriven: list[str], failed: list[str],
                             more: bool) -> None:
    await db.execute("INSERT INTO redrive_runs (horizon, redriven, failed, more) VALUES ($1, $2, $3, $4)",
                     horizon, redriven, failed, more)


async def list_redrive_runs(db: Executor, *, limit: int = 20) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM redrive_runs ORDER BY id DESC LIMIT $1", limit))
