"""fan_out_delivery: turn one stored webhook delivery into per-message workflows and status rows."""

import asyncpg
import structlog
from temporalio import activity

from wa_archive.archive.fanout import fan_out_stored
from wa_archive.contacts.feed_options import ConsentFeedOptions
from wa_archive.models import (
    ArchiveOptions,
    FanOutResult,
    IngestDeliveryInput,
    OutboundOptions,
)
from wa_archive.names import FAN_OUT_DELIVERY

log = structlog.get_logger("wa_archive.delivery")


class DeliveryActivities:
    def __init__(self, pool: asyncpg.Pool, options: ArchiveOptions, outbound: OutboundOptions,
                 contact_secret: str, task_queue: str, consent: ConsentFeedOptions) -> None:
        self.pool = pool
        self.options = options
        self.outbound = outbound
        self.contact_secret = contact_secret
        self.task_queue = task_queue
        self.consent = consent

    @activity.defn(name=FAN_OUT_DELIVERY)
    async def fan_out_delivery(self, inp: IngestDeliveryInput) -> FanOutResult:
        """Record statuses and raw events, then start one ArchiveMessage workflow per message."""
        result = await fan_out_stored(
            self.pool, activity.client(), inp.delivery_sha256, options=self.options, outbound=self.outbound,
            task_queue=self.task_queue, contact_secret=self.contact_secret, consent=self.consent,
            on_started=activity.heartbeat)
        log.info("delivery_fanned_out", delivery=inp.delivery_sha256, **result.model_dump())
        return result
