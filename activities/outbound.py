"""Outbound activities: snapshot the template in force, and record what was sent."""

import asyncpg
import structlog
from temporalio import activity

from activities.attempts import record_attempts
from wa_archive.archive import writes
from wa_archive.archive.provenance import DeliveryCache, check_outbound, stored_delivery_loader, stored_outbound
from wa_archive.archive.templates import snapshot_sent_template
from wa_archive.models import (
    StoredOutbound,
    TemplateSnapshotInput,
    TemplateSnapshotResult,
    WriteOutboundInput,
)
from wa_archive.names import READ_STORED_OUTBOUND, SNAPSHOT_TEMPLATE, WRITE_OUTBOUND
from wa_archive.observability import metrics
from wa_archive.retention.policies import RetentionRules
from wa_archive.sources.meta.graph import GraphClient

log = structlog.get_logger("wa_archive.outbound")


class OutboundActivities:
    def __init__(self, graph: GraphClient, pool: asyncpg.Pool, storage_url: str, rules: RetentionRules,
                 waba_id: str | None = None) -> None:
        self.graph = graph
        self.pool = pool
        self.storage_url = storage_url
        self.rules = rules
        self.waba_id = waba_id  # the configured WABA: a record may name it, or one a stored status named
        self.deliveries = DeliveryCache(stored_delivery_loader(pool))

    @activity.defn(name=READ_STORED_OUTBOUND)
    async def read_stored_outbound(self, message_id: str) -> StoredOutbound:
        """The send and the status webhooks the archive stored for the message: what OutboundMessage
        decides from, whatever its signals said."""
        return await stored_outbound(self.pool, self.deliveries, message_id)

    @activity.defn(name=SNAPSHOT_TEMPLATE)
    @record_attempts("snapshot_template", lambda inp: (inp.message_id, None))
    async def snapshot_template(self, inp: TemplateSnapshotInput) -> TemplateSnapshotResult:
        """Fetch the definition now in force, store it content-addressed, render the sent text."""
        return await snapshot_sent_template(self.pool, self.graph, message_id=inp.message_id, waba_id=inp.waba_id,
                                            send_template=inp.send_template)

    @activity.defn(name=WRITE_OUTBOUND)
    @record_attempts("write_outbound", lambda inp: (inp.message_id, None))
    async def write_outbound(self, inp: WriteOutboundInput) -> bool:
        """The outbound record, only if it follows from the send record the API stored
        (UnverifiedMessage otherwise: nothing is written)."""
        await check_outbound(self.pool, self.deliveries, inp, self.waba_id)
        created = await writes.write_outbound(self.pool, inp, self.storage_url, self.rules)
        if created:
            metrics.message_recorded("meta", "out", inp.archive_status, inp.timestamp, None)
        log.info("outbound_recorded", message_id=inp.message_id, created=created, flags=inp.flags)
        return created
