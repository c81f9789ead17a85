"""Whether a message handed over to be recorded is what the archive itself stored.

Temporal is working state, never a source of messages: anyone who can start a workflow on the cluster
can give ArchiveMessage or OutboundMessage any input (a plaintext payload passes the codec, so that
histories written before it still replay; an operator can also seal one through the codec server).
So the activities that record a message check it against what only the archive's own front doors
write, and refuse it with UnverifiedMessage, which no retry can fix, otherwise:

* inbound (Meta, WASender): the request must be exactly the one the archive builds from the delivery
  it names, a body the webhook stored after checking its signature, parsed again here as the webhook
  parsed it (the same substitution of text PostgreSQL cannot hold, the same parser); it is checked
  so before any of its media is fetched (the verify_message activity) and again when it is written;
  the message must still be linked to that delivery and never have been disposed of
  (writes.write_message); and each media record said archived must name the object the media
  activity stored for that message and position, as the store holds it (check_media_record);
* outbound: the send record the proxy or the record API stored must exist, accepted by Meta, with the
  same request and answer; what the record says was sent must follow from it; its time must be a
  stored status webhook's or the send's; its WABA the configured one or one a stored status webhook
  named, and the template snapshot that WABA's. OutboundMessage itself decides from what is stored
  (stored_outbound), so a status signal nobody's webhook carried changes nothing.

The error names the fields that differ, never their values (phone numbers, text).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from wa_archive.archive.hashing import decode_sha256
from wa_archive.archive.keys import media_object_key
from wa_archive.archive.media_types import normalize_mime
from wa_archive.db import queries
from wa_archive.errors import UnverifiedMessage
from wa_archive.json_input import load_json
from wa_archive.models import (
    ArchiveRequest,
    Contact,
    MediaRecord,
    MediaRef,
    OutboundSend,
    StatusSignal,
    StoredOutbound,
    WriteOutboundInput,
    WriteRecordsInput,
)
from wa_archive.sources.meta.outbound_request import read_send
from wa_archive.sources.meta.payload import parse_delivery
from wa_archive.sources.meta.templates import render
from wa_archive.sources.wasender.payload import parse_wasender
from wa_archive.storage.base import ObjectStore

# Parsed deliveries kept per worker: a 1,000-message delivery (a history sync's can hold thousands) is
# parsed once for all its writes. Bounded by count and by the bytes of the bodies (the parsed form is a few times
# larger); a body larger than the whole budget is still kept alone while it is the newest.
CACHE_ENTRIES = 64
CACHE_BYTES = 32 * 1024 * 1024
# A send's time is the stored send record's. Runs started before the workflow took the send as stored
# carry the webhook's clock, read just before the insert: at most this much earlier, never later.
SEND_TIME_SLACK = timedelta(seconds=5)
SENT_OR_LATER = frozenset({"sent", "delivered", "read", "played"})
# The flags OutboundMessage itself sets on a record built from a send.
OUTBOUND_FLAGS = frozenset({"sent_status_missing", "send_failed", "template_not_snapshotted"})


@dataclass(frozen=True)
class StoredDelivery:
    """A delivery as the webhook stored it: its exact bytes, and what the parser needs besides."""

    sha256: str
    source: str
    body: bytes
    received_at: datetime


@dataclass(frozen=True)
class BuiltMessages:
    """The requests the archive builds from one stored delivery, by message id, in comparable form,
    and the statuses it carries, by message id, as the webhook signalled them."""

    by_id: dict[str, list[dict[str, Any]]]
    size: int
    statuses: dict[str, list[StatusSignal]] = field(default_factory=dict)
    received_at: datetime | None = None  # when the webhook stored it (the intake latency's start)


def comparable(req: ArchiveRequest) -> dict[str, Any]:
    """A request as Temporal carries it (JSON: NaN and infinities become null), without its options,
    which are the archive's retry settings and say nothing about the message."""
    return req.model_dump(mode="json", exclude={"options"})


def build_messages(stored: StoredDelivery) -> BuiltMessages:
    """Parse a stored body exactly as the webhook (or the IngestDelivery fan-out) did."""
    try:
        data = load_json(stored.body, substitute=True)
        if stored.source == "wasender":
            parsed = parse_wasender(data, stored.sha256, stored.received_at)
        else:
            parsed = parse_delivery(data, stored.sha256, stored.received_at)
    except (ValueError, KeyError, TypeError, AttributeError):  # JsonRefused and EnvelopeError among them
        return BuiltMessages(by_id={}, size=len(stored.body), received_at=stored.received_at)  # nothing verifiable
    by_id: dict[str, list[dict[str, Any]]] = {}
    for req in parsed.messages:
        by_id.setdefault(req.message_id, []).append(comparable(req))
    statuses: dict[str, list[StatusSignal]] = {}
    for st in parsed.statuses:
        statuses.setdefault(st.message_id, []).append(
            StatusSignal(status=st.status, timestamp=st.timestamp, waba_id=st.waba_id, errors=st.errors))
    return BuiltMessages(by_id=by_id, size=len(stored.body), statuses=statuses, received_at=stored.received_at)


class DeliveryCache:
    """Stored deliveries, parsed, by sha256, the most recently used kept. A delivery is addressed by
    the hash of its bytes, so an entry never goes stale; only its size is bounded. Concurrent lookups
    of one delivery parse it once."""

    def __init__(self, load: Callable[[str], Awaitable[StoredDelivery | None]], *,
                 max_entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self._load = load
        self._entries: OrderedDict[str, BuiltMessages] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.parsed = 0  # how many bodies were parsed: for tests and the curious

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, sha256: str) -> BuiltMessages | None:
        """The delivery's messages; None when no such delivery is stored (never cached)."""
        if (hit := self._hit(sha256)) is not None:
            return hit
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        try:
            async with lock:
                if (hit := self._hit(sha256)) is not None:
                    return hit
                stored = await self._load(sha256)
                if stored is None:
                    return None
                # Off the event loop: a large delivery takes a while to parse, and heartbeats and
                # other activities should not wait for it.
                built = await asyncio.to_thread(build_messages, stored)
                self.parsed += 1
                self._put(sha256, built)
                return built
        finally:
            if not lock.locked():
                self._locks.pop(sha256, None)

    def _hit(self, sha256: str) -> BuiltMessages | None:
        built = self._entries.get(sha256)
        if built is not None:
            self._entries.move_to_end(sha256)
        return built

    def _put(self, sha256: str, built: BuiltMessages) -> None:
        self._entries[sha256] = built
        self._bytes += built.size
        while len(self._entries) > 1 and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size


def stored_delivery_loader(pool: asyncpg.Pool) -> Callable[[str], Awaitable[StoredDelivery | None]]:
    """What DeliveryCache loads from: the deliveries table."""
    async def load(sha256: str) -> StoredDelivery | None:
        row = await queries.get_delivery(pool, sha256)
        if row is None:
            return None
        return StoredDelivery(sha256=sha256, source=row["source"], body=bytes(row["body"]),
                              received_at=row["received_at"])

    return load


def _short(value: str) -> str:
    """An attacker's string, cut to what identifies it in an error (a delivery hash is 64 characters)."""
    return value if len(value) <= 64 else value[:64] + "…"


def _differing(given: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    return sorted(k for k in given.keys() | expected.keys() if given.get(k) != expected.get(k))


async def check_request(deliveries: DeliveryCache, req: ArchiveRequest) -> None:
    """Refuse unless the request is one the archive built from the stored delivery it names."""
    sha = _short(req.delivery_sha256)
    built = await deliveries.get(req.delivery_sha256)
    if built is None:
        raise UnverifiedMessage(f"not recorded: delivery {sha} was never stored by the webhook")
    candidates = built.by_id.get(req.message_id)
    if not candidates:
        raise UnverifiedMessage(f"not recorded: the message is not in delivery {sha}")
    given = comparable(req)
    if given not in candidates:
        fields = ", ".join(_differing(given, candidates[0]))
        raise UnverifiedMessage(
            f"not recorded: it differs from the message as stored delivery {sha} has it, in: {fields}")


async def check_still_linked(pool: asyncpg.Pool, req: ArchiveRequest) -> None:
    """Refuse a message disposed of (retention over, or erased), or no longer linked to its delivery
    (writes.write_message checks the same again in its transaction)."""
    if await queries.was_disposed(pool, req.message_id):
        raise UnverifiedMessage("not recorded: the message was disposed of (retention over or erased);"
                                " it is never archived again")
    if not await queries.delivery_carried(pool, req.delivery_sha256, req.message_id):
        raise UnverifiedMessage("not recorded: the message is not linked to the delivery it names"
                                " (never linked, or removed since)")


async def check_inbound(deliveries: DeliveryCache, records: WriteRecordsInput, store: ObjectStore) -> None:
    """Refuse unless the request is one the archive built from the stored delivery it names, and its
    media records are those of the request's media, each archived one an object the archive's media
    activities stored for it."""
    req = records.request
    await check_request(deliveries, req)
    if [(m.position, m.media_id) for m in records.media] != [(i, m.media_id) for i, m in enumerate(req.media)]:
        raise UnverifiedMessage("not recorded: its media records are not those of the message's media")
    expected_status = "archived" if all(m.status == "archived" for m in records.media) else "failed"
    if records.archive_status != expected_status:
        raise UnverifiedMessage("not recorded: its status is not the one its media records give")
    for ref, record in zip(req.media, records.media, strict=True):
        await check_media_record(store, req, ref, record)


async def check_media_record(store: ObjectStore, req: ArchiveRequest, ref: MediaRef, record: MediaRecord) -> None:
    """A media record is the worker's word: a failed one may claim no object; an archived one must
    name the key media_object_key gives this message and position, and that object must be in the
    store as the media activity wrote it (its hash and size, the message and media ids it wrote
    with it), and carry the provider's SHA-256 where the message declared one. One HEAD per item."""
    where = f"media {record.position}"
    differing = []
    if (record.kind, record.filename) != (ref.kind, ref.filename):
        differing.append("kind/filename")
    if ref.mime_type is not None and record.declared_mime_type != ref.mime_type:
        differing.append("declared_mime_type")
    if record.mime_type != normalize_mime(record.declared_mime_type):
        differing.append("mime_type")
    if ref.provider_sha256 is not None and record.provider_sha256 != ref.provider_sha256:
        differing.append("provider_sha256")
    key = media_object_key(req.message_id, req.timestamp, req.contact.path_segment(), record.mime_type,
                           record.position)
    if record.status == "failed":
        if (record.storage_key, record.size, record.sha256, record.stored_at) != (None, None, None, None):
            differing.append("object of a failed item")
    else:
        if record.storage_key != key:
            differing.append("storage_key")
        # WhatsApp's stickers are kept when their declared hash differs (media.archive_encrypted_media).
        declared = decode_sha256(record.provider_sha256)
        if declared is not None and not (ref.encrypted is not None and ref.kind == "sticker") \
                and record.sha256 != declared.hex():
            differing.append("sha256 (not the provider's)")
    if differing:
        raise UnverifiedMessage(f"not recorded: {where} differs from the message's media in: {', '.join(differing)}")
    if record.status == "failed":
        return
    info = await store.head(key)
    if info is None:
        raise UnverifiedMessage(f"not recorded: {where} names no object in the store")
    found = {"sha256": info.sha256, "size": info.size, "message-id": info.metadata.get("message-id"),
             "media-id": info.metadata.get("media-id")}
    wanted = {"sha256": record.sha256, "size": record.size, "message-id": req.message_id,
              "media-id": ref.media_id[:200]}
    if found != wanted:
        raise UnverifiedMessage(f"not recorded: {where} is not the object the store holds under its key, in: "
                                f"{', '.join(_differing(found, wanted))}")


async def stored_outbound(pool: asyncpg.Pool, deliveries: DeliveryCache, message_id: str) -> StoredOutbound:
    """The accepted send the proxy or the record API stored, and the status webhooks stored for the
    message, each as the webhook read it from its signed delivery (with its WABA), in stored order."""
    row = await queries.stored_send(pool, message_id)
    send = None
    if row is not None and row["accepted"]:
        send = OutboundSend(message_id=message_id, phone_number_id=row["phone_number_id"], request=row["request"],
                            response=row["response"], via=row["via"], recorded_at=row["recorded_at"])
    statuses: list[StatusSignal] = []
    for sha in dict.fromkeys(r["delivery_sha256"] for r in await queries.message_statuses(pool, message_id)):
        built = await deliveries.get(sha)
        for st in built.statuses.get(message_id, []) if built else []:
            if st not in statuses:  # a status repeated in a later delivery is one status
                statuses.append(st)
    return StoredOutbound(send=send, statuses=statuses)


async def check_outbound(pool: asyncpg.Pool, deliveries: DeliveryCache, inp: WriteOutboundInput,
                         configured_waba: str | None) -> None:
    """Refuse unless the outbound record follows from the send record the API stored (or, for a
    message whose send never reached the archive, from the status webhooks it stored)."""
    stored = await stored_outbound(pool, deliveries, inp.message_id)
    if not inp.payload:
        return _check_statuses_only(inp, stored)
    send = stored.send
    if send is None:
        raise UnverifiedMessage("not recorded: no accepted send of this message was stored by the send proxy"
                                " or the record API")
    as_stored = {"request": send.request, "response": send.response, "via": send.via}
    differing = [k for k in ("request", "response", "via") if inp.payload.get(k) != as_stored[k]]
    if set(inp.payload) != set(as_stored):
        differing.append("payload")
    if inp.phone_number_id != send.phone_number_id:
        differing.append("phone_number_id")
    if differing:
        raise UnverifiedMessage(f"not recorded: it differs from the stored send record in: {', '.join(differing)}")

    content = read_send(send.request, send.response)
    expected: dict[str, Any] = {"type": content.type, "contact": content.contact,
                                "template_name": content.template_name,
                                "template_language": content.template_language,
                                "media": [content.media.media_id] if content.media else []}
    given: dict[str, Any] = {"type": inp.type, "contact": inp.contact, "template_name": inp.template_name,
                             "template_language": inp.template_language, "media": [m.media_id for m in inp.media]}
    differing = _differing(given, expected)
    # The WABA whose template is snapshotted: the one configured, or one a stored status named.
    wabas = {w for w in [configured_waba, *(s.waba_id for s in stored.statuses)] if w}
    if inp.waba_id not in wabas and (inp.waba_id is not None or wabas):
        differing.append("waba_id")
    if content.type != "template":
        if inp.text != content.text or inp.template is not None:
            differing.append("text")
    elif inp.template is None:  # not snapshotted: no text to show rather than an unproven one
        if inp.text is not None:
            differing.append("text")
    elif not await _rendered_from_snapshot(pool, inp, content.send_template):
        differing.append("template")
    if not set(inp.flags) <= OUTBOUND_FLAGS or (
            "send_failed" in inp.flags and not any(s.status == "failed" for s in stored.statuses)):
        differing.append("flags")
    sent_times = {s.timestamp for s in stored.statuses if s.status in SENT_OR_LATER and s.timestamp}
    if inp.timestamp not in sent_times and not (
            send.recorded_at - SEND_TIME_SLACK <= inp.timestamp <= send.recorded_at):
        differing.append("timestamp")
    if differing:
        raise UnverifiedMessage(f"not recorded: it does not follow from the stored send record in: "
                                f"{', '.join(sorted(set(differing)))}")


async def _rendered_from_snapshot(pool: asyncpg.Pool, inp: WriteOutboundInput, send_template: dict[str, Any]) -> bool:
    """The template snapshot exists, was fetched from the record's WABA, and the text is that definition
    rendered with the stored send's parameters."""
    template = inp.template
    assert template is not None
    snap = await queries.template_snapshot(pool, template.sha256)
    if snap is None or snap["waba_id"] != inp.waba_id:
        return False
    text = render(snap["definition"], send_template)
    return (template.rendered_text == text and inp.text == text
            and (template.name, template.language) == (inp.template_name, inp.template_language))


def _check_statuses_only(inp: WriteOutboundInput, stored: StoredOutbound) -> None:
    """No send record reached the workflow: the record may hold only what the status webhooks said,
    and only when no send is stored (the record would otherwise lose the send's content)."""
    if stored.send is not None:
        raise UnverifiedMessage("not recorded: a send of this message is stored, so a record without it is not")
    times = {s.timestamp for s in stored.statuses}
    if not times:
        raise UnverifiedMessage("not recorded: no status of this message was received by the webhook")
    empty = (inp.type == "unknown" and inp.text is None and inp.contact == Contact() and not inp.media
             and inp.template is None and inp.template_name is None and inp.template_language is None
             and inp.phone_number_id is None and inp.flags == ["no_send_record"])
    if not empty:
        raise UnverifiedMessage("not recorded: a record without a send may hold nothing but its statuses")
    # Without a status time the workflow used its own clock (a status webhook without a timestamp).
    if inp.timestamp not in times and None not in times:
        raise UnverifiedMessage("not recorded: its time is not one a status webhook of this message carried")
