"""What the HTTP edge hands over, made durable before it is acknowledged.

A webhook delivery: its exact bytes in Postgres, then Temporal holding its work. A small delivery
is fanned out at once (statuses and events written with it, each message's workflow started); a
large one (Meta batches up to 1,000 updates) is handed whole to one IngestDelivery workflow so that
the acknowledgement stays fast. An outbound send: the exchange with Meta in Postgres, then the
message's OutboundMessage workflow signalled. Each function raises unless all of it is done, and
repeating it after a failure changes nothing, so the caller answers "retry" on any exception. A
delivery's hand-off, once done, is recorded (`delivery_handoffs`); one stored whose hand-off failed
is handed over by the re-drive (redrive.py) even if its sender never retries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client

from wa_archive.archive.fanout import record_delivery, start_messages
from wa_archive.archive.starter import signal_outbound, start_ingest_delivery
from wa_archive.contacts.feed_options import ConsentFeedOptions
from wa_archive.contacts.feeds import carries_evidence
from wa_archive.db import handoffs, queries
from wa_archive.models import ArchiveOptions, OutboundOptions, OutboundSend, OutboundStart
from wa_archive.names import SIGNAL_SEND
from wa_archive.sources.meta.payload import ParsedDelivery


@dataclass
class Delivery:
    """A webhook body whose sender was authenticated, as it is stored: the exact bytes and where they came from."""

    source: str
    body: bytes
    signature: str | None  # kept as evidence when it is a MAC over the body, never when it is a secret
    remote_addr: str | None
    received_at: datetime
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.body).hexdigest()

    def row(self, updates: int) -> dict[str, Any]:
        """The `deliveries` row's values."""
        return {"sha256": self.sha256, "source": self.source, "body": self.body, "signature": self.signature,
                "remote_addr": self.remote_addr, "updates": updates, "received_at": self.received_at}


async def hand_over_delivery(
    pool: asyncpg.Pool, client: Client, delivery: Delivery, updates: int, parsed: ParsedDelivery | None, *,
    options: ArchiveOptions, outbound: OutboundOptions, task_queue: str, contact_secret: str,
    rpc_timeout: timedelta, consent: ConsentFeedOptions, signal_statuses: bool = True,
) -> None:
    """Store the delivery and start its work: the fan-out of `parsed`, or, when it is None (too many
    updates to fan out here), the IngestDelivery workflow that parses and fans it out."""
    row = delivery.row(updates)
    if parsed is None:
        await queries.insert_delivery(pool, **row)
        await start_ingest_delivery(client, delivery.sha256, task_queue=task_queue, rpc_timeout=rpc_timeout)
        await handoffs.record_handoff(pool, delivery.sha256, "webhook")
        return
    if parsed.statuses or parsed.events or parsed.template_events \
            or carries_evidence(parsed, consent):
        # One commit for the delivery with its statuses, events and consent evidence (a STOP text).
        async with pool.acquire() as conn, conn.transaction():
            await queries.insert_delivery(conn, **row)
            skip = await record_delivery(conn, delivery.sha256, parsed, consent=consent)
    else:  # messages only, the common case: a single statement
        skip = await queries.insert_delivery_with_messages(
            pool, **row, message_ids=[m.message_id for m in parsed.messages])
    await start_messages(client, parsed, skip, options=options, outbound=outbound, task_queue=task_queue,
                         contact_secret=contact_secret, rpc_timeout=rpc_timeout, signal_statuses=signal_statuses)
    # Only now is all of it in Temporal's hands (with nothing to start or signal, as soon as the rows
    # above committed); until this row exists the re-drive (archive/redrive.py) treats it as not handed over.
    await handoffs.record_handoff(pool, delivery.sha256, "webhook")


async def hand_over_send(
    pool: asyncpg.Pool, client: Client, send: OutboundSend, *, token_name: str, options: OutboundOptions,
    task_queue: str, contact_secret: str, rpc_timeout: timedelta,
) -> None:
    """Keep a send Meta accepted (the exact exchange), then signal it to its message's workflow.

    The workflow gets the send as stored, which the worker checks the record against: when the
    message's send was stored before (a proxy hand-over that failed, then posted to the record API),
    that first one.
    """
    row = await queries.record_outbound_send(
        pool, message_id=send.message_id, phone_number_id=send.phone_number_id, via=send.via,
        request=send.request, response=send.response, http_status=200, accepted=True, token_name=token_name)
    if row is None:
        raise RuntimeError(f"the send of {send.message_id} was not stored")
    stored = OutboundSend(message_id=send.message_id, phone_number_id=row["phone_number_id"],
                          request=row["request"], response=row["response"], via=row["via"],
                          recorded_at=row["recorded_at"])
    await signal_outbound(
        client, OutboundStart(message_id=send.message_id, options=options), SIGNAL_SEND, stored,
        task_queue=task_queue, contact_secret=contact_secret,
        contact=str(stored.request.get("to") or "") or None, rpc_timeout=rpc_timeout)
