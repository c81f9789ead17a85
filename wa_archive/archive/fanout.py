"""Fan a stored delivery out: statuses and raw events into Postgres, one workflow per message.

Used by the IngestDelivery activity for large deliveries and inline by the webhook for small ones.
Everything here is idempotent, so repeating it after a crash or a redelivery changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client

from wa_archive.archive.starter import signal_outbound, start_archive_message, supersede_outbound
from wa_archive.contacts.feed_options import ConsentFeedOptions
from wa_archive.contacts.feeds import record_delivery_consent
from wa_archive.db import queries
from wa_archive.errors import DeliveryNotStored
from wa_archive.json_input import load_json
from wa_archive.models import (
    ArchiveOptions,
    ArchiveRequest,
    FanOutResult,
    OutboundOptions,
    OutboundStart,
    StatusSignal,
)
from wa_archive.names import SIGNAL_STATUS
from wa_archive.sources.meta.coexistence import BUSINESS_APP
from wa_archive.sources.meta.payload import ParsedDelivery, StatusEvent, parse_delivery
from wa_archive.sources.wasender.payload import parse_wasender

# Concurrent workflow starts per delivery: enough to fan out 1,000 updates quickly without
# flooding a small Temporal frontend.
START_CONCURRENCY = 32


async def record_delivery(conn: asyncpg.Connection, delivery_sha256: str, parsed: ParsedDelivery, *,
                          consent: ConsentFeedOptions) -> set[str]:
    """Statuses, raw events, consent evidence and message links; returns the ids with nothing to start:
    messages already archived or disposed of (a disposed message is neither linked nor started again,
    and its statuses are not recorded again), and statuses of messages a delivery carried (an echo: no
    send record will ever come)."""
    ids = [m.message_id for m in parsed.messages]
    await queries.insert_status_events(conn, delivery_sha256, parsed.statuses)
    await queries.insert_webhook_events(conn, delivery_sha256, parsed.events)
    await queries.insert_template_events(conn, delivery_sha256, parsed.template_events)
    await record_delivery_consent(conn, delivery_sha256, parsed, consent)
    await queries.link_deliveries(conn, delivery_sha256, ids)
    known = ids + [s.message_id for s in parsed.statuses]
    skip = await queries.settled_message_ids(conn, known) if known else set()
    # Only statuses' ids: a message of this very delivery is linked above and must still be started.
    status_ids = list({s.message_id for s in parsed.statuses} - set(ids))
    if status_ids:
        skip |= await queries.delivered_message_ids(conn, status_ids)
    return skip


async def start_messages(
    client: Client,
    parsed: ParsedDelivery,
    skip: set[str],
    *,
    options: ArchiveOptions,
    outbound: OutboundOptions,
    task_queue: str,
    contact_secret: str,
    rpc_timeout: timedelta | None = None,
    on_started: Callable[[int], None] | None = None,
    signal_statuses: bool = True,
) -> None:
    """Start (or join) one ArchiveMessage workflow per message, and signal each status to its
    outbound message's workflow, except for messages in `skip` (already archived, or disposed of). Sources whose
    outgoing messages arrive whole (WASender) have no outbound workflow to signal.

    An echo is an outbound message that arrives whole: its statuses are not signalled (nor those of
    any message in the same delivery), and an outbound workflow its statuses started before it came
    is told to end, so neither waits for a send record that will never come."""
    gate = asyncio.Semaphore(START_CONCURRENCY)
    started = 0
    own = {m.message_id for m in parsed.messages}

    async def signal(status: StatusEvent) -> None:
        nonlocal started
        async with gate:
            await signal_outbound(
                client, OutboundStart(message_id=status.message_id, options=outbound), SIGNAL_STATUS,
                StatusSignal(status=status.status, timestamp=status.timestamp, waba_id=status.waba_id,
                             errors=status.errors),
                task_queue=task_queue, contact_secret=contact_secret, contact=status.recipient_id,
                rpc_timeout=rpc_timeout)
            started += 1
            if on_started:
                on_started(started)

    async def start(req: ArchiveRequest) -> None:
        nonlocal started
        async with gate:
            await start_archive_message(client, req.model_copy(update={"options": options}),
                                        task_queue=task_queue, contact_secret=contact_secret,
                                        rpc_timeout=rpc_timeout)
            if signal_statuses and BUSINESS_APP in req.flags:
                await supersede_outbound(client, req.message_id, contact_secret=contact_secret,
                                         rpc_timeout=rpc_timeout)
            started += 1
            if on_started:
                on_started(started)

    await asyncio.gather(*(start(m) for m in parsed.messages if m.message_id not in skip),
                         *(signal(st) for st in parsed.statuses
                           if signal_statuses and st.message_id not in skip and st.message_id not in own))


def summary(parsed: ParsedDelivery, skipped: set[str]) -> FanOutResult:
    return FanOutResult(messages=len(parsed.messages), statuses=len(parsed.statuses),
                        events=len(parsed.events), already_archived=len(skipped))


async def fan_out(
    pool: asyncpg.Pool,
    client: Client,
    delivery_sha256: str,
    data: dict[str, Any],
    received_at: datetime,
    *,
    options: ArchiveOptions,
    outbound: OutboundOptions,
    task_queue: str,
    contact_secret: str,
    consent: ConsentFeedOptions,
    on_started: Callable[[int], None] | None = None,
    source: str = "meta",
) -> FanOutResult:
    """The whole fan-out of a delivery already stored in Postgres, parsed as its source's webhook parses it
    (a WASender delivery reaches here only through a re-drive: the webhook fans those out inline)."""
    if source == "wasender":
        parsed = parse_wasender(data, delivery_sha256, received_at)
    else:
        parsed = parse_delivery(data, delivery_sha256, received_at)
    async with pool.acquire() as conn, conn.transaction():
        done = await record_delivery(conn, delivery_sha256, parsed, consent=consent)
    # WASender's outgoing messages arrive whole: it has no outbound workflows to signal (webhook/wasender.py).
    await start_messages(client, parsed, done, options=options, outbound=outbound, task_queue=task_queue,
                         contact_secret=contact_secret, on_started=on_started,
                         signal_statuses=source != "wasender")
    return summary(parsed, done)


async def fan_out_stored(
    pool: asyncpg.Pool,
    client: Client,
    delivery_sha256: str,
    *,
    options: ArchiveOptions,
    outbound: OutboundOptions,
    task_queue: str,
    contact_secret: str,
    consent: ConsentFeedOptions,
    on_started: Callable[[int], None] | None = None,
) -> FanOutResult:
    """The fan-out of a delivery the webhook stored but left to a workflow (a large batch), or one the
    re-drive handed over because the webhook could not (wa_archive/archive/redrive.py)."""
    row = await queries.get_delivery(pool, delivery_sha256)
    if row is None:
        raise DeliveryNotStored(f"delivery {delivery_sha256} is not stored (never stored, or disposed of):"
                                " nothing to fan out")
    # Decoded as the webhook decoded it, so text PostgreSQL cannot hold is replaced the same way.
    return await fan_out(pool, client, delivery_sha256, load_json(row["body"], substitute=True), row["received_at"],
                         options=options, outbound=outbound, task_queue=task_queue,
                         contact_secret=contact_secret, consent=consent, on_started=on_started, source=row["source"])
