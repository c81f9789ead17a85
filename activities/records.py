"""Postgres writes of the ArchiveMessage workflow: the records, and critical failures."""

import asyncpg
import structlog
from temporalio import activity

from activities.attempts import record_attempts
from wa_archive.archive import writes
from wa_archive.archive.provenance import DeliveryCache, check_inbound, stored_delivery_loader
from wa_archive.db import queries
from wa_archive.models import CriticalFailureInput, WriteRecordsInput
from wa_archive.names import RECORD_CRITICAL_FAILURE, WRITE_RECORDS
from wa_archive.retention.policies import RetentionRules

log = structlog.get_logger("wa_archive.records")


class RecordActivities:
    def __init__(self, pool: asyncpg.Pool, storage_url: str, rules: RetentionRules) -> None:
        self.pool = pool
        self.storage_url = storage_url
        self.rules = rules
        self.deliveries = DeliveryCache(stored_delivery_loader(pool))

    @activity.defn(name=WRITE_RECORDS)
    @record_attempts("write_records", lambda inp: (inp.request.message_id, None))
    async def write_records(self, inp: WriteRecordsInput) -> bool:
        """Message and media rows in one idempotent transaction, only if the message is the one the
        stored delivery it names holds (UnverifiedMessage otherwise: nothing is written)."""
        await check_inbound(self.deliveries, inp)
        created = await writes.write_message(self.pool, inp, self.storage_url, self.rules)
        log.info("message_recorded", message_id=inp.request.message_id, created=created,
                 archive_status=inp.archive_status, media=len(inp.media))
        return created

    @activity.defn(name=RECORD_CRITICAL_FAILURE)
    async def record_critical_failure(self, inp: CriticalFailureInput) -> int:
        """Write the critical failure row with every attempt, and say so at CRITICAL."""
        attempts = await queries.insert_failure(
            self.pool, message_id=inp.message_id, stage=inp.stage, media_id=inp.media_id,
            workflow_id=inp.workflow_id, run_id=inp.run_id, retry_state=inp.retry_state,
            last_error_type=inp.last_error_type, last_error=inp.last_error,
        )
        log.critical("archive_failed", message_id=inp.message_id, stage=inp.stage,
                     media_id=inp.media_id, attempts=len(attempts), retry_state=inp.retry_state,
                     error_type=inp.last_error_type, workflow_id=inp.workflow_id, run_id=inp.run_id)
        return len(attempts)
