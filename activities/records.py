"""Postgres writes of the ArchiveMessage workflow: the records, and critical failures."""

import asyncpg
import structlog
from temporalio import activity

from activities.attempts import record_attempts
from wa_archive.archive import writes
from wa_archive.archive.provenance import (
    DeliveryCache,
    check_inbound,
    check_request,
    check_still_linked,
    stored_delivery_loader,
)
from wa_archive.db import queries
from wa_archive.errors import UnverifiedMessage
from wa_archive.models import ArchiveRequest, CriticalFailureInput, WriteRecordsInput
from wa_archive.names import RECORD_CRITICAL_FAILURE, VERIFY_MESSAGE, WRITE_RECORDS
from wa_archive.observability import metrics
from wa_archive.retention.policies import RetentionRules
from wa_archive.storage.base import ObjectStore

log = structlog.get_logger("wa_archive.records")


class RecordActivities:
    def __init__(self, pool: asyncpg.Pool, store: ObjectStore, rules: RetentionRules) -> None:
        self.pool = pool
        self.store = store  # media records are checked against the objects it holds
        self.storage_url = store.url
        self.rules = rules
        self.deliveries = DeliveryCache(stored_delivery_loader(pool))

    @activity.defn(name=VERIFY_MESSAGE)
    @record_attempts("verify_message", lambda req: (req.message_id, None))
    async def verify_message(self, req: ArchiveRequest) -> None:
        """Before any of its media is fetched: the request must be one the archive built from the
        stored delivery it names, still linked to it and never disposed of (UnverifiedMessage
        otherwise), so a refused request stores nothing, not even an object."""
        await check_request(self.deliveries, req)
        await check_still_linked(self.pool, req)

    @activity.defn(name=WRITE_RECORDS)
    @record_attempts("write_records", lambda inp: (inp.request.message_id, None))
    async def write_records(self, inp: WriteRecordsInput) -> bool:
        """Message and media rows in one idempotent transaction, only if the message is the one the
        stored delivery it names holds and each archived media record names the object stored for
        it (UnverifiedMessage otherwise: nothing is written)."""
        await check_inbound(self.deliveries, inp, self.store)
        created = await writes.write_message(self.pool, inp, self.storage_url, self.rules)
        if created:
            req = inp.request
            built = await self.deliveries.get(req.delivery_sha256)  # cached by the check above
            metrics.message_recorded(req.source, req.direction, inp.archive_status, req.timestamp,
                                     built.received_at if built else None)
        log.info("message_recorded", message_id=inp.request.message_id, created=created,
                 archive_status=inp.archive_status, media=len(inp.media))
        return created

    @activity.defn(name=RECORD_CRITICAL_FAILURE)
    async def record_critical_failure(self, inp: CriticalFailureInput) -> int:
        """Write the critical failure row with every attempt, and say so at CRITICAL (no row for a
        message disposed of: its id is not written again). The row names the run that scheduled it,
        never another: a workflow on someone's own task queue cannot file failures under ours."""
        info = activity.info()
        if (inp.workflow_id, inp.run_id) != (info.workflow_id, info.workflow_run_id):
            raise UnverifiedMessage("not recorded: a critical failure must name the run that reports it")
        attempts = await queries.insert_failure(
            self.pool, message_id=inp.message_id, stage=inp.stage, media_id=inp.media_id,
            workflow_id=inp.workflow_id, run_id=inp.run_id, retry_state=inp.retry_state,
            last_error_type=inp.last_error_type, last_error=inp.last_error,
        )
        metrics.critical_failure(inp.stage)
        log.critical("archive_failed", message_id=inp.message_id, stage=inp.stage,
                     media_id=inp.media_id, attempts=len(attempts), retry_state=inp.retry_state,
                     error_type=inp.last_error_type, workflow_id=inp.workflow_id, run_id=inp.run_id)
        return len(attempts)
