"""Marketing preferences Meta reports: the `user_preferences` webhook field and the `system` message of
type `user_preference_changed` it may send instead.

Lenient like the rest of the parser: the change itself is always kept raw (a webhook event of kind
`user_preferences`), and only items whose every field is readable, with a category and value we
know, become preference changes. A malformed or unknown item is never guessed at and never breaks
the delivery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from wa_archive.archive.keys import normalize_phone
from wa_archive.sources.meta.payload import PREFERENCES_FIELD as FIELD
from wa_archive.sources.meta.payload import WebhookEvent, parse_timestamp

SYSTEM_TYPE = "user_preference_changed"
MARKETING = "marketing_messages"
Preference = Literal["stop", "resume"]
PREFERENCES: frozenset[str] = frozenset({"stop", "resume"})
# Keys of a system message (or of an object inside it) that may carry the preference itself.
_VALUE_KEYS = ("value", "preference", "user_preference", "marketing_messages", "state", "action")


class PreferenceChange(BaseModel):
    """One readable `user_preferences` item."""

    phone_number_id: str | None  # the business number it applies to
    wa_id: str | None
    user_id: str | None  # the business-scoped user id, where Meta gives one
    phone: str | None
    name: str | None
    category: str
    value: Preference
    detail: str | None
    timestamp: datetime
    raw_timestamp: str


def preference_changes(event: WebhookEvent) -> list[PreferenceChange]:
    """The readable, known items of a stored `user_preferences` change (none for any other event)."""
    if event.field != FIELD or event.kind != FIELD:
        return []
    value = event.payload
    metadata = value.get("metadata")
    phone_number_id = _text(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
    raw_contacts = value.get("contacts")
    contacts = [c for c in raw_contacts if isinstance(c, dict)] if isinstance(raw_contacts, list) else []
    items = value.get(FIELD)
    changes = []
    for item in items if isinstance(items, list) else []:
        change = _change(item, phone_number_id, contacts)
        if change is not None:
            changes.append(change)
    return changes


def _change(item: Any, phone_number_id: str | None, contacts: list[dict[str, Any]]) -> PreferenceChange | None:
    if not isinstance(item, dict):
        return None
    wa_id, user_id = _text(item.get("wa_id")), _text(item.get("user_id"))
    category, value = _text(item.get("category")), _text(item.get("value"))
    raw_ts = item.get("timestamp")
    timestamp = parse_timestamp(raw_ts)
    if not (wa_id or user_id) or category != MARKETING or value not in PREFERENCES or timestamp is None:
        return None
    contact = next((c for c in contacts if (wa_id and c.get("wa_id") == wa_id)
                    or (user_id and c.get("user_id") == user_id)), {})
    profile = contact.get("profile")
    return PreferenceChange(
        phone_number_id=phone_number_id, wa_id=wa_id, user_id=user_id or _text(contact.get("user_id")),
        phone=normalize_phone(wa_id), name=_text(profile.get("name")) if isinstance(profile, dict) else None,
        category=category, value=value,  # type: ignore[arg-type]  # checked against PREFERENCES above
        detail=_text(item.get("detail")), timestamp=timestamp, raw_timestamp=str(raw_ts))


def system_preference(item: dict[str, Any]) -> Preference | None:
    """stop or resume for a `user_preference_changed` system message that states one in its fields.

    Read from the structured fields only (a key such as `value` or `preference`, on the system object or
    an object inside it, or a body that is nothing but the word); free text describing the change is
    never interpreted. A category other than marketing messages is not ours to read.
    """
    system = item.get("system")
    if item.get("type") != "system" or not isinstance(system, dict) or system.get("type") != SYSTEM_TYPE:
        return None
    found: set[str] = set()
    for part in [system, *_inner_objects(system)]:
        category = part.get("category")
        if category is not None and _folded(category) != MARKETING:
            return None
        for key in _VALUE_KEYS:
            word = _folded(part.get(key))
            if word in PREFERENCES:
                found.add(word)
    body = _folded(system.get("body"))
    if body in PREFERENCES:
        found.add(body)
    # Both words at once is a message that contradicts itself: kept as a message, not as evidence.
    return found.pop() if len(found) == 1 else None  # type: ignore[return-value]  # a member of PREFERENCES


def _inner_objects(system: dict[str, Any]) -> list[dict[str, Any]]:
    inner: list[dict[str, Any]] = []
    for value in system.values():
        if isinstance(value, dict):
            inner.append(value)
        elif isinstance(value, list):
            inner.extend(v for v in value if isinstance(v, dict))
    return inner


def _folded(value: Any) -> str | None:
    return value.strip().casefold() if isinstance(value, str) else None


def _text(value: Any) -> str | None:
    """A non-empty string field, or None: numbers and objects are not identifiers."""
    return value if isinstance(value, str) and value else None
