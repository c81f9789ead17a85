"""The retrieval test: read a sample of the archive back, as an auditor would need it, and keep the report.

The sample spreads over the months held and always includes the oldest and the newest object. Each
object is re-hashed while it streams and compared with the index; a red run leaves a critical
failure row (with its ledger leaf) per bad object, so it is visible where every other failure is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timezone

import asyncpg
import structlog

from wa_archive.db import queries
from wa_archive.models import RetrievalCheck, RetrievalItem, RetrievalReport
from wa_archive.storage import ObjectStore

log = structlog.get_logger("wa_archive.retrieval")

_SAMPLE_SQL = (
    "WITH ranked AS (SELECT m.*, row_number() OVER (PARTITION BY date_trunc('month', stored_at)"
    "  ORDER BY random()) AS rn, count(*) OVER () AS total,"
    "  dense_rank() OVER (ORDER BY date_trunc('month', stored_at)) AS month_no"
    " FROM media m WHERE status = 'archived'),"
    " months AS (SELECT max(month_no) AS n FROM ranked)"
    " SELECT ranked.* FROM ranked, months WHERE rn <= ceil($1::float / greatest(months.n, 1))"
    " UNION SELECT m.*, 0, 0, 0 FROM (SELECT * FROM media WHERE status = 'archived'"
    "  ORDER BY stored_at ASC LIMIT 1) m"
    " UNION SELECT m.*, 0, 0, 0 FROM (SELECT * FROM media WHERE status = 'archived'"
    "  ORDER BY stored_at DESC LIMIT 1) m"
)


async def sample(pool: asyncpg.Pool, size: int) -> list[RetrievalItem]:
    """Archived objects spread across the months held, always with the oldest and the newest."""
    rows = await pool.fetch(_SAMPLE_SQL, size)
    by_id: dict[object, asyncpg.Record] = {}
    ordered = sorted(rows, key=lambda r: (r["rn"] != 0, r["stored_at"]))  # oldest/newest first
    for r in ordered:
        by_id.setdefault(r["archive_id"], r)
    picked = list(by_id.values())[: max(size, 2)]
    return [RetrievalItem(archive_id=str(r["archive_id"]), message_id=r["message_id"], storage_key=r["storage_key"],
                          sha256=r["sha256"], size=r["size"], stored_at=r["stored_at"])
            for r in sorted(picked, key=lambda r: r["stored_at"])]


async def check_objects(store: ObjectStore, items: list[RetrievalItem],
                        on_checked: Callable[[int], None] | None = None) -> list[RetrievalCheck]:
    """Each object read back in turn; `on_checked(n)` after the n-th."""
    checks = []
    for n, item in enumerate(items, 1):
        checks.append(await check_object(store, item))
        if on_checked:
            on_checked(n)
    return checks


async def check_object(store: ObjectStore, item: RetrievalItem) -> RetrievalCheck:
    """Read one object back, hashing while streaming, and compare with the index and metadata."""
    started = time.perf_counter()
    try:
        info = await store.head(item.storage_key)
        if info is None:
            return RetrievalCheck(item=item, status="failed", problem="object missing from the store")
        if info.needs_restore:
            return RetrievalCheck(item=item, status="restore_needed")
        problems = []
        if info.sha256 and info.sha256 != item.sha256:
            problems.append(f"object metadata SHA-256 {info.sha256} differs from the index")
        if info.lock_expected and (info.retain_until is None or info.retain_until <= datetime.now(timezone.utc)):
            problems.append("Object Lock retention is no longer in place")
        hasher, size = hashlib.sha256(), 0
        async for chunk in store.read(item.storage_key):
            hasher.update(chunk)
            size += len(chunk)
        if hasher.hexdigest() != item.sha256:
            problems.append(f"content SHA-256 {hasher.hexdigest()} differs from the archived {item.sha256}")
        if size != item.size:
            problems.append(f"size {size} differs from the archived {item.size}")
    except Exception as exc:  # noqa: BLE001 - an unreadable object is a finding, not a crash
        return RetrievalCheck(item=item, status="failed", problem=f"could not read: {exc!r}"[:500])
    elapsed = (time.perf_counter() - started) * 1000
    return RetrievalCheck(item=item, status="failed" if problems else "passed",
                          problem="; ".join(problems) or None, read_ms=round(elapsed, 2))


async def request_restores(store: ObjectStore, items: list[RetrievalItem]) -> None:
    """Ask the store for a readable copy of each archive-tier object."""
    for item in items:
        await store.request_restore(item.storage_key)


async def save_report(pool: asyncpg.Pool, report: RetrievalReport) -> None:
    """Keep the report; a red run also leaves a critical failure row per item and a CRITICAL line."""
    items = [c.model_dump(mode="json") for c in report.checks]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO retrieval_reports (workflow_id, run_id, started_at, finished_at, sample_size,"
            " passed, failed, slowest_ms, items) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
            " ON CONFLICT (run_id) DO NOTHING",
            report.workflow_id, report.run_id, report.started_at, report.finished_at, report.sample_size,
            report.passed, report.failed, report.slowest_ms, items)
        for check in report.checks:
            if check.status == "failed":
                await queries.insert_failure_row(
                    conn, message_id=check.item.message_id, stage="retrieval_test", media_id=check.item.archive_id,
                    workflow_id=report.workflow_id, run_id=report.run_id, retry_state=None,
                    last_error_type="RetrievalMismatch", last_error=check.problem, attempts=[])
    if report.failed:
        bad = [f"{c.item.message_id} ({c.item.storage_key}): {c.problem}" for c in report.checks
               if c.status == "failed"]
        log.critical("retrieval_test_failed", run_id=report.run_id, failed=report.failed, items=bad)
    else:
        log.info("retrieval_test_passed", run_id=report.run_id, sample=report.sample_size,
                 slowest_ms=report.slowest_ms)
