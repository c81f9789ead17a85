"""WASenderApi webhooks: WhatsApp-Web message objects (`key`, `message`, …) mapped onto the archive's
message model with source "wasender". Nothing is dropped: messages become ArchiveRequests, status and
receipt updates status rows, and everything else (deletions, chats, contacts, session events, and
events we do not know) raw webhook events, the unknown ones flagged.

Identity: the contact's phone comes only from phone-number fields (`cleanedSenderPn`, `senderPn`,
`cleanedParticipantPn`, or a `…@s.whatsapp.net` chat JID), never from a LID; in a group the contact
is the participant who wrote, and `wa_id` holds the chat's JID.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from wa_archive.archive.keys import MAX_MESSAGE_ID, normalize_phone
from wa_archive.errors import EnvelopeError
from wa_archive.json_input import substituted
from wa_archive.models import ArchiveRequest, Contact, EncryptedMedia, MediaRef
from wa_archive.sources.meta.payload import ParsedDelivery, StatusEvent, WebhookEvent

MESSAGE_EVENTS = frozenset({
    "messages.received", "messages.upsert", "message.sent", "message.received",
    "messages-personal.received", "messages-group.received", "messages-newsletter.received",
    "message.personal.received", "message.group.received", "message.newsletter.received",
})
STATUS_EVENTS = frozenset({"messages.update"})
RECEIPT_EVENTS = frozenset({"message-receipt.update"})
KNOWN_EVENTS = frozenset({
    "messages.delete", "messages.reaction", "chats.upsert", "chats.update", "chats.delete", "groups.upsert",
    "groups.update", "group-participants.update", "contacts.upsert", "contacts.update", "session.status",
    "qrcode.updated", "call.received", "poll.results",
})
STATUS_CODES = {0: "error", 1: "pending", 2: "sent", 3: "delivered", 4: "read", 5: "played"}
MEDIA_FIELDS = {"imageMessage": "image", "videoMessage": "video", "audioMessage": "audio",
                "documentMessage": "document", "stickerMessage": "sticker"}
OTHER_FIELDS = {"conversation": "text", "extendedTextMessage": "text", "locationMessage": "location",
                "liveLocationMessage": "location", "contactMessage": "contacts", "contactsArrayMessage": "contacts",
                "reactionMessage": "reaction", "pollCreationMessage": "poll", "pollCreationMessageV3": "poll",
                "protocolMessage": "protocol", "editedMessage": "edit", "buttonsResponseMessage": "button",
                "listResponseMessage": "interactive", "templateButtonReplyMessage": "button"}
# Wrappers that carry the real message one level down.
WRAPPERS = ("documentWithCaptionMessage", "ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2")


def check_wasender(data: Any) -> str:
    """The event name of a WASender webhook body; EnvelopeError with a reason otherwise."""
    if not isinstance(data, dict):
        raise EnvelopeError("body must be a JSON object")
    event = data.get("event")
    if not isinstance(event, str) or not event:
        raise EnvelopeError("not a WASender webhook: 'event' (string) is missing")
    if "data" not in data:
        raise EnvelopeError("not a WASender webhook: 'data' is missing")
    return event


def normalise_timestamp(raw: Any) -> datetime | None:
    """Seconds in most payloads, milliseconds in some: told apart by magnitude."""
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return None
    if value > 10 ** 11:
        value //= 1000
    try:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _items(data: Any) -> list[Any]:
    """`data.messages` as an object or an array, or `key`/`message` directly under `data`."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        return [data]
    inner = data.get("messages", data if "key" in data else None)
    if inner is None:
        return [data]
    return inner if isinstance(inner, list) else [inner]


def parse_wasender(data: dict[str, Any], delivery_sha256: str, received_at: datetime) -> ParsedDelivery:
    event = data["event"]
    sent_at = normalise_timestamp(data.get("timestamp"))
    parsed = ParsedDelivery()

    def keep_raw(position: int, kind: str, payload: Any) -> None:
        parsed.events.append(WebhookEvent(position=position, field=event, kind=kind, waba_id=None,
                                          payload=payload if isinstance(payload, dict) else {"value": payload}))

    for position, item in enumerate(_items(data["data"])):
        if event in MESSAGE_EVENTS:
            try:
                request = _message(item, delivery_sha256, sent_at or received_at)
            except (TypeError, AttributeError, ValueError):  # a malformed item is kept raw, never lost
                request = None
            if request is None:
                keep_raw(position, "unparseable", item)
            else:
                parsed.messages.append(request)
        elif event in STATUS_EVENTS or event in RECEIPT_EVENTS:
            try:
                status = _status(item, event, data.get("timestamp"), sent_at)
            except (TypeError, AttributeError, ValueError):
                status = None
            if status is None:
                keep_raw(position, "unparseable", item)
            else:
                parsed.statuses.append(status)
        elif event in KNOWN_EVENTS:
            keep_raw(position, event.replace(".", "_").replace("-", "_"), item)
        else:
            keep_raw(position, "unknown_event", item)  # stored raw and flagged for a person to look at
    if not _items(data["data"]):
        keep_raw(0, "empty", data["data"])
    return parsed


def _jid_phone(jid: Any) -> str | None:
    """Digits of a phone-number JID (…@s.whatsapp.net); None for LIDs, groups and anything else."""
    if isinstance(jid, str) and jid.endswith("@s.whatsapp.net"):
        return normalize_phone(jid.split("@", 1)[0].split(":", 1)[0])
    return None


def _contact(item: dict[str, Any], key: dict[str, Any]) -> tuple[Contact, bool]:
    chat = key.get("remoteJid") if isinstance(key.get("remoteJid"), str) else None
    group = bool(chat and chat.endswith("@g.us"))
    lid = next((v for v in (key.get("senderLid"), key.get("participantLid"), chat, key.get("participant"))
                if isinstance(v, str) and v.endswith("@lid")), None)
    if group:
        phone = normalize_phone(key.get("cleanedParticipantPn")) or _jid_phone(key.get("participantPn")) \
            or _jid_phone(key.get("participant"))
    elif key.get("fromMe"):
        phone = _jid_phone(chat)  # the chat's other party
    else:
        phone = normalize_phone(key.get("cleanedSenderPn")) or _jid_phone(key.get("senderPn")) or _jid_phone(chat)
    name = item.get("pushName") if not key.get("fromMe") else None
    return Contact(phone=phone, wa_id=chat, user_id=lid, name=name), group


def _unwrap(message: dict[str, Any]) -> dict[str, Any]:
    for _ in range(3):
        wrapper = next((w for w in WRAPPERS if isinstance(message.get(w), dict)), None)
        if wrapper is None or not isinstance(message[wrapper].get("message"), dict):
            break
        message = message[wrapper]["message"]
    return message


def _message(item: Any, delivery_sha256: str, fallback_ts: datetime) -> ArchiveRequest | None:
    if not isinstance(item, dict) or not isinstance(item.get("key"), dict):
        return None
    key = item["key"]
    # An id no workflow or object key can carry is not a message; the delivery keeps it raw.
    if not isinstance(key.get("id"), str) or not key["id"] or len(key["id"]) > MAX_MESSAGE_ID:
        return None
    raw_message = item.get("message")
    message = _unwrap(raw_message if isinstance(raw_message, dict) else {})
    contact, group = _contact(item, key)
    flags = ["group"] if group else []
    field = next((f for f in MEDIA_FIELDS if isinstance(message.get(f), dict)), None) or next(
        (f for f in OTHER_FIELDS if f in message), None)
    content = message.get(field) if field else None
    body: dict[str, Any] = content if isinstance(content, dict) else {}
    mtype, related, media = "unknown", None, []
    if field in MEDIA_FIELDS:
        mtype = MEDIA_FIELDS[field]
        if body.get("mediaKey") and (body.get("url") or body.get("directPath")):
            media.append(_media(key["id"], field, mtype, body))
        else:
            flags.append("media_key_missing")
    elif field is not None:
        mtype = OTHER_FIELDS[field]
        if field in ("protocolMessage", "editedMessage"):
            proto = body.get("message", {}).get("protocolMessage", body) if field == "editedMessage" else body
            kind = str(proto.get("type", ""))
            mtype = "revoked" if kind in ("0", "REVOKE") else "edit" if kind in ("14", "MESSAGE_EDIT") else "protocol"
            related = (proto.get("key") or {}).get("id")
        elif field == "reactionMessage":
            related = (body.get("key") or {}).get("id")
    elif message:
        mtype = next(iter(message)).removesuffix("Message") or "unknown"
        flags.append("unknown_type")
    context_info = body.get("contextInfo")
    context = context_info if isinstance(context_info, dict) else {}
    related = related or context.get("stanzaId")
    text = item.get("messageBody") or message.get("conversation") or body.get("text") or body.get("caption") \
        or _edited_text(body)
    timestamp = normalise_timestamp(item.get("messageTimestamp")) or fallback_ts
    if substituted(item):
        flags.append("text_substituted")  # what the record holds differs from the signed bytes
    return ArchiveRequest(
        message_id=key["id"], delivery_sha256=delivery_sha256, source="wasender",
        direction="out" if key.get("fromMe") else "in", type=mtype, timestamp=timestamp,
        raw_timestamp=str(item.get("messageTimestamp")) if item.get("messageTimestamp") is not None else None,
        contact=contact, text=text, related_message_id=related, flags=flags, payload=item, media=media)


def _edited_text(body: dict[str, Any]) -> str | None:
    edited = body.get("editedMessage") or (body.get("message") or {}).get("protocolMessage", {}).get("editedMessage")
    if isinstance(edited, dict):
        return edited.get("conversation") or (edited.get("extendedTextMessage") or {}).get("text")
    return None


def _media(message_id: str, field: str, kind: str, body: dict[str, Any]) -> MediaRef:
    try:
        length = int(str(body["fileLength"])) if body.get("fileLength") is not None else None
    except ValueError:
        length = None
    if kind == "video" and body.get("gifPlayback"):
        kind = "gif"
    elif kind == "audio" and body.get("ptt"):
        kind = "ptt"
    return MediaRef(
        media_id=f"{message_id}.{field}", kind=kind, mime_type=body.get("mimetype"),
        provider_sha256=body.get("fileSha256"), filename=body.get("fileName") or body.get("title"),
        caption=body.get("caption"),
        encrypted=EncryptedMedia(message_field=field, url=body.get("url"), direct_path=body.get("directPath"),
                                 media_key=body["mediaKey"], file_enc_sha256=body.get("fileEncSha256"),
                                 file_length=length))


def _status(item: Any, event: str, raw_ts: Any, sent_at: datetime | None) -> StatusEvent | None:
    if not isinstance(item, dict) or not isinstance(item.get("key"), dict) or not item["key"].get("id"):
        return None
    key = item["key"]
    if not isinstance(key["id"], str) or len(key["id"]) > MAX_MESSAGE_ID:
        return None
    if event in STATUS_EVENTS:
        code = (item.get("update") or {}).get("status")
        status = STATUS_CODES.get(code, str(code)) if code is not None else "unknown"
        recipient, when = _jid_phone(key.get("remoteJid")) or key.get("remoteJid"), raw_ts
    else:
        receipt = item.get("receipt") or {}
        kind = next((k for k in ("playedTimestamp", "readTimestamp", "receiptTimestamp") if receipt.get(k)), None)
        status = {"playedTimestamp": "receipt_played", "readTimestamp": "receipt_read",
                  "receiptTimestamp": "receipt_delivered"}.get(kind or "", "receipt")
        user = receipt.get("userJid")
        recipient, when = _jid_phone(user) or user, receipt.get(kind) if kind else raw_ts
    return StatusEvent(message_id=key["id"], status=status, timestamp=normalise_timestamp(when) or sent_at,
                       raw_timestamp=str(when) if when is not None else None, recipient_id=recipient,
                       payload=item)
