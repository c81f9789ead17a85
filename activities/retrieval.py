"""Retrieval test activities: pick a sample, read each object back and re-hash it, keep the report."""

import hashlib
import time
from datetime import datetime, timezone

import asyncpg
import structlog
from temporalio import activity

from wa_archive.integrity import ledger
from wa_archive.models import RetrievalBatch, RetrievalCheck, RetrievalItem, RetrievalReport, RetrievalTestInput
from wa_archive.names import CHECK_OBJECTS, REQUEST_RESTORE, SAMPLE_MEDIA, SAVE_RETRIEVAL_REPORT
from wa_archive.storage import ObjectStore

log = structlog.get_logger("wa_archive.retrieval")
ARCHIVE_TIERS = ("GLACIER", "DEEP_ARCHIVE", "GLACIER_IR")


class RetrievalActivities:
    def __init__(self, pool: asyncpg.Pool, store: ObjectStore) -> None:
        self.pool = pool
        self.store = store

    @activity.defn(name=SAMPLE_MEDIA)
    async def sample_media(self, inp: RetrievalTestInput) -> RetrievalBatch:
        """Archived objects spread across the months held, always with the oldest and the newest."""
        rows = await self.pool.fetch(
            "WITH ranked AS (SELECT m.*, row_number() OVER (PARTITION BY date_trunc('month', stored_at)"
            "  ORDER BY random()) AS rn, count(*) OVER () AS total,"
            "  dense_rank() OVER (ORDER BY date_trunc('month', stored_at)) AS month_no"
            " FROM media m WHERE status = 'archived'),"
            " months AS (SELECT max(month_no) AS n FROM ranked)"
            " SELECT ranked.* FROM ranked, months WHERE rn <= ceil($1::float / greatest(months.n, 1))"
            " UNION SELECT m.*, 0, 0, 0 FROM (SELECT * FROM media WHERE status = 'archived'"
            "  ORDER BY stored_at ASC LIMIT 1) m"
            " UNION SELECT m.*, 0, 0, 0 FROM (SELECT * FROM media WHERE status = 'archived'"
            "  ORDER BY stored_at DESC LIMIT 1) m", inp.sample_size)
        by_id = {}
        ordered = sorted(rows, key=lambda r: (r["rn"] != 0, r["stored_at"]))  # oldest/newest first
        for r in ordered:
            by_id.setdefault(r["archive_id"], r)
        picked = list(by_id.values())[: max(inp.sample_size, 2)]
        return RetrievalBatch(items=[
            RetrievalItem(archive_id=str(r["archive_id"]), message_id=r["message_id"], storage_key=r["storage_key"],
                          sha256=r["sha256"], size=r["size"], stored_at=r["stored_at"])
            for r in sorted(picked, key=lambda r: r["stored_at"])])

    @activity.defn(name=CHECK_OBJECTS)
    async def check_objects(self, batch: RetrievalBatch) -> list[RetrievalCheck]:
        """Read each object back, hashing while streaming, and compare with the index and metadata."""
        checks = []
        for n, item in enumerate(batch.items, 1):
            checks.append(await self._check(item))
            activity.heartbeat(n)
        return checks

    async def _check(self, item: RetrievalItem) -> RetrievalCheck:
        started = time.perf_counter()
        try:
            info = await self.store.head(item.storage_key)
            if info is None:
                return RetrievalCheck(item=item, status="failed", problem="object missing from the store")
            if info.storage_class in ARCHIVE_TIERS and not info.restored:
                return RetrievalCheck(item=item, status="restore_needed")
            problems = []
            if info.sha256 and info.sha256 != item.sha256:
                problems.append(f"object metadata SHA-256 {info.sha256} differs from the index")
            if info.lock_expected and (info.retain_until is None or info.retain_until <= datetime.now(timezone.utc)):
                problems.append("Object Lock retention is no longer in place")
            hasher, size = hashlib.sha256(), 0
            async for chunk in self.store.read(item.storage_key):
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

    @activity.defn(name=REQUEST_RESTORE)
    async def request_restore(self, batch: RetrievalBatch) -> None:
        restore = getattr(self.store, "request_restore", None)
        for item in batch.items:
            if restore is not None:
                await restore(item.storage_key)

    @activity.defn(name=SAVE_RETRIEVAL_REPORT)
    async def save_retrieval_report(self, report: RetrievalReport) -> None:
        """Keep the report; a red run also leaves a critical failure row per item and a CRITICAL line."""
        items = [c.model_dump(mode="json") for c in report.checks]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO retrieval_reports (workflow_id, run_id, started_at, finished_at, sample_size,"
                " passed, failed, slowest_ms, items) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
                " ON CONFLICT (run_id) DO NOTHING",
                report.workflow_id, report.run_id, report.started_at, report.finished_at, report.sample_size,
                report.passed, report.failed, report.slowest_ms, items)
            for check in report.checks:
                if check.status == "failed":
                    row = await conn.fetchrow(
                        "INSERT INTO archive_failures (message_id, stage, media_id, workflow_id, run_id,"
                        " retry_state, last_error_type, last_error, attempts)"
                        " VALUES ($1, 'retrieval_test', $2, $3, $4, NULL, 'RetrievalMismatch', $5, '[]')"
                        " ON CONFLICT DO NOTHING RETURNING *",
                        check.item.message_id, check.item.archive_id, report.workflow_id, report.run_id,
                        check.problem)
                    if row is not None:
                        await ledger.append(conn, "failure", str(row["id"]), ledger.failure_digest(row))
        if report.failed:
            bad = [f"{c.item.message_id} ({c.item.storage_key}): {c.problem}" for c in report.checks
                   if c.status == "failed"]
            log.critical("retrieval_test_failed", run_id=report.run_id, failed=report.failed, items=bad)
        else:
            log.info("retrieval_test_passed", run_id=report.run_id, sample=report.sample_size,
                     slowest_ms=report.slowest_ms)
