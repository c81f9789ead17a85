"""redrive_deliveries: hand over the deliveries the webhook stored but could not hand to Temporal."""

from datetime import datetime, timedelta, timezone

import asyncpg
from temporalio import activity

from wa_archive.archive.redrive import redrive
from wa_archive.models import RedriveReport
from wa_archive.names import REDRIVE_DELIVERIES


class RedriveActivities:
    def __init__(self, pool: asyncpg.Pool, *, grace: timedelta, batch: int, task_queue: str) -> None:
        self.pool = pool
        self.grace = grace
        self.batch = batch
        self.task_queue = task_queue

    @activity.defn(name=REDRIVE_DELIVERIES)
    async def redrive_deliveries(self) -> RedriveReport:
        """One batch of deliveries stored longer than the grace period and not handed over."""
        return await redrive(self.pool, activity.client(), now=datetime.now(timezone.utc), grace=self.grace,
                             batch=self.batch, task_queue=self.task_queue, rpc_timeout=timedelta(seconds=10))
