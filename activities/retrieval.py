"""Retrieval test activities: pick a sample, read each object back and re-hash it, keep the report."""

import asyncpg
from temporalio import activity

from wa_archive.integrity import retrieval
from wa_archive.models import (
    RetrievalBatch,
    RetrievalCheck,
    RetrievalReport,
    RetrievalTestInput,
)
from wa_archive.names import (
    CHECK_OBJECTS,
    REQUEST_RESTORE,
    SAMPLE_MEDIA,
    SAVE_RETRIEVAL_REPORT,
)
from wa_archive.storage import ObjectStore


class RetrievalActivities:
    def __init__(self, pool: asyncpg.Pool, store: ObjectStore) -> None:
        self.pool = pool
        self.store = store

    @activity.defn(name=SAMPLE_MEDIA)
    async def sample_media(self, inp: RetrievalTestInput) -> RetrievalBatch:
        """Archived objects spread across the months held, always with the oldest and the newest."""
        return RetrievalBatch(items=await retrieval.sample(self.pool, inp.sample_size))

    @activity.defn(name=CHECK_OBJECTS)
    async def check_objects(self, batch: RetrievalBatch) -> list[RetrievalCheck]:
        """Read each object back, hashing while streaming, and compare with the index and metadata."""
        return await retrieval.check_objects(self.store, batch.items, on_checked=activity.heartbeat)

    @activity.defn(name=REQUEST_RESTORE)
    async def request_restore(self, batch: RetrievalBatch) -> None:
        await retrieval.request_restores(self.store, batch.items)

    @activity.defn(name=SAVE_RETRIEVAL_REPORT)
    async def save_retrieval_report(self, report: RetrievalReport) -> None:
        """Keep the report; a red run also leaves a critical failure row per item and a CRITICAL line."""
        await retrieval.save_report(self.pool, report)
