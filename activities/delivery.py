"""fan_out_delivery: turn one stored webhook delivery into per-message workflows and status rows."""

import asyncio
import json

import asyncpg
import structlog
from temporalio import activity
from temporalio.client import Client

from wa_archive import queries
from wa_archive.meta_payload import parse_delivery
from wa_archive.models import ArchiveOptions, FanOutResult, IngestDeliveryInput
from wa_archive.names import FAN_OUT_DELIVERY
from wa_archive.starter import start_archive_message

log = structlog.get_logger("wa_archive.delivery")

# Concurrent workflow starts per delivery: enough to fan out 1,000 updates quickly without
# flooding a small Temporal frontend.
START_CONCURRENCY = 32


class DeliveryActivities:
    def __init__(self, pool: asyncpg.Pool, options: ArchiveOptions, contact_secret: str, task_queue: str) -> None:
        self.pool = pool
        self.options = options
        self.contact_secret = contact_secret
        self.task_queue = task_queue

    @activity.defn(name=FAN_OUT_DELIVERY)
    async def fan_out_delivery(self, inp: IngestDeliveryInput) -> FanOutResult:
        """Record statuses and raw events, then start one ArchiveMessage workflow per message.

        Everything here is idempotent, so a retry after a crash repeats it harmlessly.
        """
        row = await queries.get_delivery(self.pool, inp.delivery_sha256)
        if row is None:
            raise LookupError(f"delivery {inp.delivery_sha256} is not stored")
        parsed = parse_delivery(json.loads(row["body"]), inp.delivery_sha256, row["received_at"])
        ids = [m.message_id for m in parsed.messages]
        async with self.pool.acquire() as conn, conn.transaction():
            await queries.insert_status_events(conn, inp.delivery_sha256, parsed.statuses)
            await queries.insert_webhook_events(conn, inp.delivery_sha256, parsed.events)
            await queries.link_deliveries(conn, inp.delivery_sha256, ids)
            done = await queries.archived_message_ids(conn, ids)

        client: Client = activity.client()
        gate = asyncio.Semaphore(START_CONCURRENCY)
        started = 0

        async def start(req) -> None:
            nonlocal started
            async with gate:
                await start_archive_message(client, req.model_copy(update={"options": self.options}),
                                            task_queue=self.task_queue, contact_secret=self.contact_secret)
                started += 1
                activity.heartbeat(started)

        await asyncio.gather(*(start(m) for m in parsed.messages if m.message_id not in done))
        log.info("delivery_fanned_out", delivery=inp.delivery_sha256, messages=len(ids),
                 statuses=len(parsed.statuses), events=len(parsed.events), already_archived=len(done))
        return FanOutResult(messages=len(ids), statuses=len(parsed.statuses),
                            events=len(parsed.events), already_archived=len(done))
