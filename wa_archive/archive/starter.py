"""Idempotent workflow starts: one workflow per delivery and one per message, ids derived from them.

A message's workflow id and search attribute hold a keyed hash of its id (keys.message_key), never the
id: Meta's message ids carry the customer's number, and Temporal keeps both unencrypted.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from wa_archive.archive.keys import (
    contact_key,
    delivery_workflow_id,
    message_key,
    message_workflow_id,
    outbound_workflow_id,
)
from wa_archive.models import ArchiveRequest, IngestDeliveryInput, OutboundStart
from wa_archive.names import ARCHIVE_STATUS, CONTACT_KEY, MESSAGE_ID, SIGNAL_SUPERSEDED

# A duplicate while the first run is open joins it; after a completed run it is rejected (the
# archive already holds it); after a failed run it starts again, so a redelivery can retry.
_REUSE = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
_CONFLICT = WorkflowIDConflictPolicy.USE_EXISTING


async def start_ingest_delivery(
    client: Client, delivery_sha256: str, *, task_queue: str, rpc_timeout: timedelta | None = None
) -> bool:
    """Start IngestDelivery for a stored delivery; False if it already ran to completion."""
    try:
        await client.start_workflow(
            "IngestDelivery", IngestDeliveryInput(delivery_sha256=delivery_sha256),
            id=delivery_workflow_id(delivery_sha256), task_queue=task_queue,
            id_reuse_policy=_REUSE, id_conflict_policy=_CONFLICT, rpc_timeout=rpc_timeout,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def start_archive_message(
    client: Client, req: ArchiveRequest, *, task_queue: str, contact_secret: str,
    rpc_timeout: timedelta | None = None,
) -> bool:
    """Start ArchiveMessage for one message; False if an earlier run already archived it."""
    contact = req.contact.phone or req.contact.wa_id or req.contact.user_id or req.contact.username
    try:
        await client.start_workflow(
            "ArchiveMessage", req, id=message_workflow_id(contact_secret, req.message_id), task_queue=task_queue,
            id_reuse_policy=_REUSE, id_conflict_policy=_CONFLICT,
            search_attributes=_search_attributes(req.message_id, contact, contact_secret),
            rpc_timeout=rpc_timeout,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def signal_outbound(
    client: Client, start: OutboundStart, signal: str, arg: object, *, task_queue: str,
    contact_secret: str, contact: str | None, rpc_timeout: timedelta | None = None,
) -> bool:
    """Signal an outbound message's workflow, starting it if this is the first thing heard of it.

    False when the workflow already finished (the message is archived; nothing more is needed).
    """
    try:
        await client.start_workflow(
            "OutboundMessage", start, id=outbound_workflow_id(contact_secret, start.message_id), task_queue=task_queue,
            id_reuse_policy=_REUSE, start_signal=signal, start_signal_args=[arg],
            search_attributes=_search_attributes(start.message_id, contact, contact_secret),
            rpc_timeout=rpc_timeout,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def supersede_outbound(client: Client, message_id: str, *, contact_secret: str,
                             rpc_timeout: timedelta | None = None) -> bool:
    """Tell the message's OutboundMessage workflow, if one is running (started by a status that came
    first), that a delivery carried the message whole; False when none is running."""
    handle = client.get_workflow_handle(outbound_workflow_id(contact_secret, message_id))
    try:
        await handle.signal(SIGNAL_SUPERSEDED, rpc_timeout=rpc_timeout)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # none was started, or it has ended
            return False
        raise
    return True


def _search_attributes(message_id: str, contact: str | None, contact_secret: str) -> TypedSearchAttributes:
    """The message and the contact as keyed hashes, and a pending status (all stored unencrypted)."""
    pairs = [SearchAttributePair(MESSAGE_ID, message_key(contact_secret, message_id)),
             SearchAttributePair(ARCHIVE_STATUS, "pending")]
    if contact:
        pairs.append(SearchAttributePair(CONTACT_KEY, contact_key(contact_secret, contact)))
    return TypedSearchAttributes(pairs)
