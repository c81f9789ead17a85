"""Disposition activities: prepare (holds reconciled, missing retention filled), remove one batch
of due messages, and carry out erasure requests whose date has come."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from wa_archive.models import DispositionBatch, DispositionInput
from wa_archive.names import DISPOSE_BATCH, PREPARE_DISPOSITION, SETTLE_ERASURES
from wa_archive.retention import erasure
from wa_archive.retention.disposition import Disposer
from wa_archive.retention.policies import RetentionRules


class DispositionActivities:
    def __init__(self, pool: asyncpg.Pool, disposer: Disposer, rules: RetentionRules) -> None:
        self.pool = pool
        self.disposer = disposer
        self.rules = rules

    @activity.defn(name=PREPARE_DISPOSITION)
    async def prepare_disposition(self) -> int:
        """Objects brought in line with holds first, so nothing held slips through; returns changes."""
        return await self.disposer.prepare(self.rules.default_days)

    @activity.defn(name=DISPOSE_BATCH)
    async def dispose_batch(self, inp: DispositionInput) -> DispositionBatch:
        return await self.disposer.dispose_due(
            phone=inp.phone, limit=inp.batch, run_id=activity.info().workflow_run_id,
            on_progress=lambda done, total: activity.heartbeat({"done": done, "total": total}))

    @activity.defn(name=SETTLE_ERASURES)
    async def settle_erasures(self) -> int:
        return await erasure.settle_due_requests(self.pool, self.disposer, run_id=activity.info().workflow_run_id)
