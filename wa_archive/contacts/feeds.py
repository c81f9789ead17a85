"""Consent evidence a webhook delivery carries, read from the stored signed delivery alone.

Four feeds: Meta's `user_preferences` changes, the `user_preference_changed` system message, a failed
send whose error means the person stopped marketing messages, and an inbound text that is nothing but
a stop or start keyword. `record_delivery_consent` runs inside the delivery's transaction (the same
one that stores its statuses and raw events), so a consent entry exists exactly when its delivery
does; each entry's dedupe key makes a redelivery or a retried fan-out record nothing new.

Every field here came from WhatsApp, so nothing that does not fit the evidence model is allowed to
fail the delivery: such an item is left as it is stored (a raw event, a status, a message) and logged.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from pydantic import ValidationError

from wa_archive.archive.keys import normalize_phone
from wa_archive.contacts.consent import ConsentEvidence, lock_entries, record_entry
from wa_archive.contacts.feed_options import ConsentFeedOptions
from wa_archive.models import ArchiveRequest
from wa_archive.sources.meta.payload import ParsedDelivery, StatusEvent
from wa_archive.sources.meta.preferences import MARKETING, preference_changes, system_preference

log = structlog.get_logger("wa_archive.consent")

# Message types whose text is what the person typed or tapped (a quick-reply button's label).
_TYPED = frozenset({"text", "button"})
# Messages that are not a fresh statement of the person: an edit or revocation of an earlier one,
# a group message (not addressed to the business alone).
_NOT_A_REQUEST = frozenset({"edit", "revocation", "group"})
_STATE = {"stop": "opted_out", "resume": "opted_in"}
EVIDENCE_CHARS = 1000


def recorded_by(source: str) -> str:
    """Who recorded an entry a webhook carried: the source's webhook."""
    return f"{source}-webhook"


def delivery_evidence(parsed: ParsedDelivery, delivery_sha256: str,
                      options: ConsentFeedOptions) -> list[ConsentEvidence]:
    """Every piece of consent evidence in a parsed delivery, in delivery order by feed."""
    evidence = []
    for values in _candidates(parsed, options):
        try:
            evidence.append(ConsentEvidence(evidence_delivery_sha256=delivery_sha256, **values))
        except ValidationError as exc:  # e.g. no identifier of the person at all: nothing to attach it to
            log.warning("consent_evidence_unusable", delivery=delivery_sha256, source=values["source"],
                        message_id=values.get("evidence_message_id"), error=exc.errors()[0]["msg"])
    return evidence


def carries_evidence(parsed: ParsedDelivery, options: ConsentFeedOptions) -> bool:
    """Whether the delivery holds anything that may be consent evidence (so it needs a transaction)."""
    return bool(_candidates(parsed, options))


def _candidates(parsed: ParsedDelivery, options: ConsentFeedOptions) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for event in parsed.events:
        for change in preference_changes(event):
            found.append(dict(
                phone=change.phone, wa_id=change.wa_id, bsuid=change.user_id,
                business_phone_number_id=change.phone_number_id, category=change.category,
                state=_STATE[change.value], source="user_preferences", at=change.timestamp,
                recorded_by=recorded_by("meta"), evidence=_short(change.detail),
                detail={"value": change.value, "detail": change.detail, "name": change.name},
                # The time as Unix seconds, however Meta wrote it ("1767225600" or 1767225600).
                dedupe_key=f"up:{change.phone_number_id or ''}:{change.wa_id or change.user_id}:"
                           f"{int(change.timestamp.timestamp())}:{change.value}"))
    for message in parsed.messages:
        found.extend(_message_evidence(message, options))
    for status in parsed.statuses:
        found.extend(_failure_evidence(status, options))
    return found


def _identifiers(message: ArchiveRequest) -> dict[str, Any]:
    contact = message.contact
    if message.source == "meta":
        return {"phone": contact.phone, "wa_id": contact.wa_id, "bsuid": contact.user_id}
    # WASender's wa_id and user_id are JIDs and LIDs, not Meta's identifiers: the phone speaks for them.
    return {"phone": contact.phone, "wa_id": None, "bsuid": None}


def _message_evidence(message: ArchiveRequest, options: ConsentFeedOptions) -> list[dict[str, Any]]:
    if message.direction != "in" or _NOT_A_REQUEST & set(message.flags):
        return []
    common = dict(_identifiers(message), business_phone_number_id=message.phone_number_id,
                  category=MARKETING, at=message.timestamp, recorded_by=recorded_by(message.source),
                  evidence_message_id=message.message_id)
    if message.source == "meta" and message.type == "system":
        preference = system_preference(message.payload)
        if preference is None:
            return []
        system = message.payload.get("system")
        return [dict(common, state=_STATE[preference], source="system_message",
                     evidence=_short(system.get("body")) if isinstance(system, dict) else None,
                     detail={"value": preference}, dedupe_key=f"msg:{message.message_id}")]
    if message.type not in _TYPED:
        return []
    match = options.keywords.match(message.text)
    if match is None:
        return []
    return [dict(common, state=match.state, source="keyword", evidence=match.keyword,
                 detail={"language": match.language}, dedupe_key=f"kw:{message.message_id}")]


def _failure_evidence(status: StatusEvent, options: ConsentFeedOptions) -> list[dict[str, Any]]:
    # A failure without a readable time is left as the status it is: an opt-out needs a moment.
    if status.status != "failed" or status.timestamp is None:
        return []
    found = []
    for error in status.errors:
        code = error.get("code")
        if isinstance(code, (int, str)) and not isinstance(code, bool) and str(code) in options.optout_error_codes:
            title = error.get("title")
            phone = normalize_phone(status.recipient_id)
            found.append(dict(
                # A recipient id that is no phone number is a business-scoped user id.
                phone=phone, wa_id=status.recipient_id if phone else None,
                bsuid=None if phone else status.recipient_id,
                business_phone_number_id=status.phone_number_id, category=MARKETING, state="opted_out",
                source="send_failure", at=status.timestamp, recorded_by=recorded_by("meta"),
                evidence=_short(title), evidence_message_id=status.message_id,
                detail={"code": str(code), "title": title if isinstance(title, str) else None},
                dedupe_key=f"fail:{status.message_id}:{str(code)}"))
    return found


def _short(text: object) -> str | None:
    """Text kept as an entry's evidence: a string, cut to a readable length (the delivery keeps it whole)."""
    return text[:EVIDENCE_CHARS] if isinstance(text, str) else None


async def record_delivery_consent(conn: asyncpg.Connection, delivery_sha256: str, parsed: ParsedDelivery,
                                  options: ConsentFeedOptions) -> int:
    """Record the delivery's consent evidence in the caller's transaction; how many entries are new."""
    new = 0
    found = delivery_evidence(parsed, delivery_sha256, options)
    await lock_entries(conn, found)
    for evidence in found:
        _, created = await record_entry(conn, evidence)
        new += created
    return new
