"""Disposition activities: prepare (holds reconciled, missing retention filled), remove one batch
of due messages, and carry out erasure requests whose date has come."""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity

from wa_archive.retention import erasure, holds, policies as retention
from wa_archive.retention.disposition import Disposer
from wa_archive.errors import RetentionActive
from wa_archive.models import DispositionBatch, DispositionInput
from wa_archive.names import DISPOSE_BATCH, PREPARE_DISPOSITION, SETTLE_ERASURES
from wa_archive.retention.policies import DEFAULT_BASIS, RetentionRules
from wa_archive.storage.posture import sweep_canaries

log = structlog.get_logger("wa_archive.disposition")


class DispositionActivities:
    def __init__(self, pool: asyncpg.Pool, disposer: Disposer, rules: RetentionRules) -> None:
        self.pool = pool
        self.disposer = disposer
        self.rules = rules

    @activity.defn(name=PREPARE_DISPOSITION)
    async def prepare_disposition(self) -> int:
        """Objects brought in line with holds first, so nothing held slips through; returns changes."""
        await retention.fill_missing(self.pool, self.rules.default_days)
        swept = await sweep_canaries(self.disposer.store)
        if swept:
            log.info("lock_canaries_removed", count=swept)
        return await holds.reconcile(self.pool, self.disposer.store)

    @activity.defn(name=DISPOSE_BATCH)
    async def dispose_batch(self, inp: DispositionInput) -> DispositionBatch:
        due = await self.disposer.due(phone=inp.phone, limit=inp.batch)
        out = DispositionBatch()
        run_id = activity.info().workflow_run_id
        for n, item in enumerate(due, 1):
            request = await self.pool.fetchval(
                "SELECT id FROM erasure_requests WHERE status = 'deferred' AND phone = $1 ORDER BY id LIMIT 1",
                item["contact"]) if item["contact"] else None
            try:
                done = await self.disposer.dispose_message(
                    item["id"], reason="erasure_request" if request else "retention_expired",
                    erasure_request_id=request, run_id=run_id)
            except RetentionActive as exc:
                log.warning("disposition_deferred", message_id=item["id"], reason=str(exc))
                out.deferred.append(item["id"])
                continue
            if done:
                out.removed += 1
                out.bytes += done["bytes"]
            activity.heartbeat({"done": n, "total": len(due)})
        out.more = len(due) == inp.batch and out.removed > 0
        log.info("disposition_batch", removed=out.removed, bytes=out.bytes, deferred=len(out.deferred))
        return out

    @activity.defn(name=SETTLE_ERASURES)
    async def settle_erasures(self) -> int:
        settled = await erasure.settle_open(self.pool, self.disposer, default_basis=DEFAULT_BASIS,
                                            run_id=activity.info().workflow_run_id)
        return sum(1 for r in settled if r["status"] == "completed")
