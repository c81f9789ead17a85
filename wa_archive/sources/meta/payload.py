"""Parse WhatsApp Cloud API webhook deliveries into archive records.

The parser is lenient about what it does not know (new message types, new fields, other webhook
fields): those are kept raw and flagged, never dropped. It is strict only about the envelope.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wa_archive.archive.keys import MAX_MESSAGE_ID, normalize_phone
from wa_archive.errors import EnvelopeError
from wa_archive.json_input import substituted
from wa_archive.models import ArchiveRequest, Contact, MediaRef
from wa_archive.sources.meta import coexistence

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
KNOWN_TYPES = frozenset(
    MEDIA_TYPES
    + ("text", "location", "contacts", "interactive", "button", "reaction", "unsupported")
    + ("edit", "revoke", "deleted", "order", "system", "request_welcome")
    + ("media_placeholder",)  # history sync: a media message whose media a later webhook may name
)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Change(_Lenient):
    field: str
    value: dict[str, Any] = Field(default_factory=dict)


class Entry(_Lenient):
    id: str | None = None
    time: int | None = None
    changes: list[Change] = Field(default_factory=list)


class Envelope(_Lenient):
    object: str
    entry: list[Entry]


class StatusEvent(BaseModel):
    """One status update (sent, delivered, read, failed, …) of an outbound message."""

    message_id: str
    status: str
    timestamp: datetime | None
    raw_timestamp: str | None
    recipient_id: str | None
    payload: dict[str, Any]
    waba_id: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)
    phone_number_id: str | None = None  # the business number that sent the message


class TemplateEvent(BaseModel):
    """A template lifecycle webhook: status (approved, rejected, paused, disabled), quality,
    category or components change."""

    position: int
    field: str
    waba_id: str | None
    template_id: str | None
    template_name: str | None
    language: str | None
    event: str | None
    payload: dict[str, Any]


class WebhookEvent(BaseModel):
    """Anything in a delivery that is not a message or a status: kept raw for later interpretation."""

    position: int
    field: str
    kind: str
    waba_id: str | None
    payload: dict[str, Any]


TEMPLATE_FIELDS = frozenset({
    "message_template_status_update", "message_template_quality_update",
    "message_template_components_update", "template_category_update",
})
# Kept raw with its own kind (not `unhandled_field`); sources/meta/preferences.py reads the stored event.
PREFERENCES_FIELD = "user_preferences"


class ParsedDelivery(BaseModel):
    messages: list[ArchiveRequest] = Field(default_factory=list)
    statuses: list[StatusEvent] = Field(default_factory=list)
    events: list[WebhookEvent] = Field(default_factory=list)
    template_events: list[TemplateEvent] = Field(default_factory=list)


def check_envelope(data: Any) -> Envelope:
    """Validate the envelope shape; raise EnvelopeError with a short reason otherwise."""
    if not isinstance(data, dict):
        raise EnvelopeError("body must be a JSON object")
    try:
        envelope = Envelope.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise EnvelopeError(f"not a Cloud API webhook envelope: {where}: {err['msg']}") from None
    if envelope.object != "whatsapp_business_account":
        raise EnvelopeError(
            f"not a Cloud API webhook envelope: object is {envelope.object!r}, "
            "expected 'whatsapp_business_account'"
        )
    for entry in envelope.entry:
        for change in entry.changes:
            for kind in ("messages", "statuses"):
                for item in _items(change.value, kind):
                    item_id = item.get("id") if isinstance(item, dict) else None
                    # Temporal would refuse such an id's workflow on every redelivery: named here instead.
                    if isinstance(item_id, str) and len(item_id) > MAX_MESSAGE_ID:
                        raise EnvelopeError(f"not a Cloud API webhook envelope: a {kind[:-1]} id is longer "
                                            f"than {MAX_MESSAGE_ID} characters")
    return envelope


def count_updates(envelope: Envelope) -> int:
    """Messages + statuses + other changes in a delivery (Meta batches up to 1,000)."""
    total = 0
    for entry in envelope.entry:
        for change in entry.changes:
            value = change.value
            n = len(_items(value, "messages")) + len(_items(value, "statuses"))
            n += coexistence.count_items(change.field, value)
            total += n or 1
    return total


def parse_timestamp(raw: Any) -> datetime | None:
    """Meta timestamps are Unix seconds as strings; None when absent or unreadable."""
    try:
        return datetime.fromtimestamp(int(str(raw)), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def parse_delivery(data: dict[str, Any], delivery_sha256: str, received_at: datetime,
                   envelope: Envelope | None = None) -> ParsedDelivery:
    """Split a delivery into messages, statuses and raw events; positions follow delivery order.

    Pass the envelope when the caller has already checked it, so it is not validated twice.
    """
    envelope = envelope or check_envelope(data)
    parsed = ParsedDelivery()
    position = 0

    def keep_raw(field: str, kind: str, waba_id: str | None, payload: dict[str, Any]) -> None:
        parsed.events.append(WebhookEvent(position=position, field=field, kind=kind,
                                          waba_id=waba_id, payload=payload))

    for entry in envelope.entry:
        for change in entry.changes:
            value = change.value
            if change.field in TEMPLATE_FIELDS:
                try:
                    parsed.template_events.append(_template_event(position, change.field, entry.id, value))
                except (TypeError, AttributeError, ValueError):
                    keep_raw(change.field, "invalid_template_event", entry.id, value)
                position += 1
                continue
            if change.field in coexistence.FIELDS:
                position = _parse_coexistence(parsed, change.field, value, entry.id, delivery_sha256,
                                              received_at, position)
                continue
            if change.field == PREFERENCES_FIELD:
                readable = isinstance(value.get(PREFERENCES_FIELD), list)
                keep_raw(change.field, PREFERENCES_FIELD if readable else "invalid_user_preferences", entry.id, value)
                position += 1
                continue
            if change.field != "messages":
                keep_raw(change.field, "unhandled_field", entry.id, value)
                position += 1
                continue
            if any(k in value and not isinstance(value[k], list) for k in ("messages", "statuses", "contacts")) \
                    or ("metadata" in value and not isinstance(value["metadata"], dict)):
                keep_raw(change.field, "invalid_change", entry.id, value)
                position += 1
                continue
            metadata = value.get("metadata") or {}
            contacts = [c for c in _items(value, "contacts") if isinstance(c, dict)]
            for item in _items(value, "messages"):
                try:
                    msg = _parse_message(item, metadata, contacts, entry.id, delivery_sha256, received_at)
                except (TypeError, AttributeError, ValueError):  # a malformed item is kept raw, never lost
                    msg = None
                if msg is None:
                    keep_raw(change.field, "invalid_message", entry.id, {"item": item})
                else:
                    parsed.messages.append(msg)
                position += 1
            for item in _items(value, "statuses"):
                try:
                    status = _parse_status(item, entry.id, metadata.get("phone_number_id"))
                except (TypeError, AttributeError, ValueError):
                    status = None
                if status is None:
                    keep_raw(change.field, "invalid_status", entry.id, {"item": item})
                else:
                    parsed.statuses.append(status)
                position += 1
            if value.get("errors"):
                keep_raw(change.field, "error", entry.id, value)
                position += 1
            if not any(value.get(k) for k in ("messages", "statuses", "errors")):
                keep_raw(change.field, "empty_change", entry.id, value)
                position += 1
    return parsed


def _parse_coexistence(parsed: ParsedDelivery, field: str, value: dict[str, Any], waba_id: str | None,
                       delivery_sha256: str, received_at: datetime, position: int) -> int:
    """Echoes and history messages through the message parser, the rest kept raw; the next position."""
    if "metadata" in value and not isinstance(value["metadata"], dict):
        parsed.events.append(WebhookEvent(position=position, field=field, kind="invalid_change",
                                          waba_id=waba_id, payload=value))
        return position + 1
    metadata = value.get("metadata") or {}
    for unit in coexistence.units(field, value):
        msg = None
        if unit.origin is not None:
            try:
                msg = _parse_message(unit.item, metadata, [], waba_id, delivery_sha256, received_at, unit.origin)
            except (TypeError, AttributeError, ValueError):  # a malformed item is kept raw, never lost
                msg = None
        if msg is not None:
            parsed.messages.append(msg)
        else:
            kind = unit.origin.invalid_kind if unit.origin is not None else unit.raw_kind or "invalid_change"
            payload = {"item": unit.item} if unit.origin is not None else unit.raw_payload
            parsed.events.append(WebhookEvent(position=position, field=field, kind=kind, waba_id=waba_id,
                                              payload=payload))
        position += 1
    return position


def _items(value: dict[str, Any], key: str) -> list[Any]:
    """value[key] when it is a list; a change whose lists are not lists is kept raw instead."""
    items = value.get(key)
    return items if isinstance(items, list) else []


def _contact_entry(item: dict[str, Any], contacts: list[dict[str, Any]]) -> dict[str, Any]:
    """The `contacts` entry describing the message's sender ({} when none does)."""
    sender = item.get("from")
    match = next((c for c in contacts if sender and c.get("wa_id") == sender), None)
    if match is None and len(contacts) == 1:
        match = contacts[0]
    return match or {}


def _contact_for(item: dict[str, Any], contacts: list[dict[str, Any]]) -> Contact:
    sender = item.get("from")
    match = _contact_entry(item, contacts)
    profile = match.get("profile") or {}
    phone = normalize_phone(sender) or normalize_phone(match.get("wa_id"))
    user_id = match.get("user_id")
    if not user_id and sender and not phone:
        user_id = sender  # a business-scoped user id in place of a phone number
    return Contact(
        phone=phone,
        wa_id=match.get("wa_id"),
        user_id=user_id,
        parent_user_id=match.get("parent_user_id"),
        username=profile.get("username") or match.get("username"),
        name=profile.get("name"),
    )


def _parse_message(
    item: Any,
    metadata: dict[str, Any],
    contacts: list[dict[str, Any]],
    waba_id: str | None,
    delivery_sha256: str,
    received_at: datetime,
    origin: coexistence.Origin | None = None,
) -> ArchiveRequest | None:
    """One message object; `origin` when it came as an echo or in the history sync, not as a live message."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    mtype = str(item.get("type") or "unknown")
    content = item.get(mtype)
    body: dict[str, Any] = content if isinstance(content, dict) else {}
    flags: list[str] = []
    text: str | None = None
    related = (item.get("context") or {}).get("id") if isinstance(item.get("context"), dict) else None
    media: list[MediaRef] = []

    if mtype == "text":
        text = body.get("body")
    elif mtype in MEDIA_TYPES:
        text = body.get("caption")
        if body.get("id"):
            media.append(
                MediaRef(
                    media_id=str(body["id"]),
                    kind=mtype,
                    mime_type=body.get("mime_type"),
                    provider_sha256=body.get("sha256"),
                    filename=body.get("filename"),
                    url=body.get("url"),
                    caption=body.get("caption"),
                )
            )
        else:
            flags.append("media_without_id")
    elif mtype == "media_placeholder":
        flags.append("media_without_id")
    elif mtype == "location":
        text = " ".join(str(v) for v in (body.get("name"), body.get("address")) if v) or None
    elif mtype == "contacts":
        cards = item.get("contacts") or []
        names = [((c.get("name") or {}).get("formatted_name")) for c in cards if isinstance(c, dict)]
        text = ", ".join(n for n in names if n) or None
    elif mtype == "interactive":
        reply = body.get(body.get("type") or "") or {}
        text = reply.get("title") if isinstance(reply, dict) else None
    elif mtype == "button":
        text = body.get("text")
    elif mtype == "reaction":
        related = body.get("message_id") or related
        text = body.get("emoji")
        if not body.get("emoji"):
            flags.append("reaction_removed")
    elif mtype in ("edit", "revoke", "deleted"):
        # Edits and revocations are new events pointing at the original; the original is kept.
        flags.append("edit" if mtype == "edit" else "revocation")
        for key in ("original_message_id", "message_id", "id"):
            if isinstance(body.get(key), str):
                related = body[key]
                break
        message = body.get("message")
        inner = message if isinstance(message, dict) else body
        text = (inner.get("text") or {}).get("body") if isinstance(inner.get("text"), dict) else None
    elif mtype == "unsupported":
        flags.append("unsupported")
        inner_type = body.get("type")
        if inner_type in ("edit", "revoke"):
            flags.append("edit" if inner_type == "edit" else "revocation")
    if mtype not in KNOWN_TYPES:
        flags.append("unknown_type")
    if item.get("errors"):
        flags.append("error")
        if text is None:
            first = item["errors"][0] if isinstance(item["errors"], list) and item["errors"] else {}
            text = first.get("title") if isinstance(first, dict) else None

    raw_ts = item.get("timestamp")
    timestamp = parse_timestamp(raw_ts)
    if timestamp is None:
        flags.append("timestamp_missing")
        timestamp = received_at
    if substituted([item, metadata, _contact_entry(item, contacts)]):
        flags.append("text_substituted")  # what the record holds differs from the signed bytes
    message_id: str = item["id"]
    direction: Literal["in", "out"] = "in"
    contact = _contact_for(item, contacts)
    if origin is not None:
        direction, contact = origin.direction, coexistence.counterpart_contact(origin.counterpart)
        flags = list(origin.flags) + flags
        if media and coexistence.BACKFILLED in origin.flags:
            # History chunks name no media; a later history webhook names it for a message already
            # given: a record of its own, pointing at the message, so the first record stays as written.
            flags.append(coexistence.HISTORY_MEDIA)
            related, message_id = message_id, message_id + coexistence.HISTORY_MEDIA_SUFFIX
        if len(message_id) > MAX_MESSAGE_ID:  # Temporal could take no workflow for it: kept raw instead
            return None
    return ArchiveRequest(
        message_id=message_id,
        direction=direction,
        delivery_sha256=delivery_sha256,
        type=mtype,
        timestamp=timestamp,
        raw_timestamp=None if raw_ts is None else str(raw_ts),
        phone_number_id=metadata.get("phone_number_id"),
        display_phone_number=metadata.get("display_phone_number"),
        waba_id=waba_id,
        contact=contact,
        text=text,
        related_message_id=related,
        flags=flags,
        payload=item,
        media=media,
    )


def _parse_status(item: Any, waba_id: str | None, phone_number_id: Any = None) -> StatusEvent | None:
    if not isinstance(item, dict) or not item.get("id") or not item.get("status"):
        return None
    raw_ts = item.get("timestamp")
    raw_errors = item.get("errors")
    errors = raw_errors if isinstance(raw_errors, list) else []
    return StatusEvent(
        message_id=str(item["id"]),
        status=str(item["status"]),
        timestamp=parse_timestamp(raw_ts),
        raw_timestamp=None if raw_ts is None else str(raw_ts),
        recipient_id=item.get("recipient_id"),
        payload=item,
        waba_id=waba_id,
        errors=[e for e in errors if isinstance(e, dict)],
        phone_number_id=phone_number_id if isinstance(phone_number_id, str) else None,
    )


def _template_event(position: int, field: str, waba_id: str | None, value: dict[str, Any]) -> TemplateEvent:
    event = value.get("event") or value.get("new_quality_score") or value.get("new_category")
    template_id = value.get("message_template_id")
    return TemplateEvent(
        position=position, field=field, waba_id=waba_id,
        template_id=None if template_id is None else str(template_id),
        template_name=value.get("message_template_name"),
        language=value.get("message_template_language"),
        event=None if event is None else str(event), payload=value,
    )
