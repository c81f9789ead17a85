"""Outbound activities: snapshot the template in force, and record what was sent."""

import asyncpg
import structlog
from temporalio import activity

from activities.attempts import record_attempts
from wa_archive.archive import writes
from wa_archive.archive.provenance import check_outbound
from wa_archive.archive.templates import snapshot_sent_template
from wa_archive.models import (
    TemplateSnapshotInput,
    TemplateSnapshotResult,
    WriteOutboundInput,
)
from wa_archive.names import SNAPSHOT_TEMPLATE, WRITE_OUTBOUND
from wa_archive.retention.policies import RetentionRules
from wa_archive.sources.meta.graph import GraphClient

log = structlog.get_logger("wa_archive.outbound")


class OutboundActivities:
    def __init__(self, graph: GraphClient, pool: asyncpg.Pool, storage_url: str, rules: RetentionRules) -> None:
        self.graph = graph
        self.pool = pool
        self.storage_url = storage_url
        self.rules = rules

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
        await check_outbound(self.pool, inp)
        created = await writes.write_outbound(self.pool, inp, self.storage_url, self.rules)
        log.info("outbound_recorded", message_id=inp.message_id, created=created, flags=inp.flags)
        return created
