"""Parsing Meta's marketing preferences: the `user_preferences` field and the `user_preference_changed`
system message. Lenient: the change is always kept raw; only readable, known items become changes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from wa_archive.sources.meta.payload import parse_delivery
from wa_archive.sources.meta.preferences import preference_changes, system_preference
from wa_archive.sources.meta.samples import BUSINESS, WABA_ID, message

RECEIVED = datetime(2026, 5, 1, tzinfo=timezone.utc)


def preferences_delivery(items, **value) -> dict:
    value = {"messaging_product": "whatsapp", "metadata": BUSINESS,
             "contacts": [{"profile": {"name": "Priya Raman"}, "wa_id": "447700900123", "user_id": "GB.123"}],
             "user_preferences": items, **value}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": WABA_ID, "changes": [{"field": "user_preferences", "value": value}]}]}


def item(**over):
    base = {"wa_id": "447700900123", "detail": "User requested to stop marketing messages",
            "category": "marketing_messages", "value": "stop", "timestamp": 1767225600}
    return {k: v for k, v in {**base, **over}.items() if v is not None}


def test_a_stop_is_kept_raw_as_user_preferences_and_read_as_a_change():
    parsed = parse_delivery(preferences_delivery([item()]), "sha", RECEIVED)
    [event] = parsed.events
    assert (event.field, event.kind, event.waba_id) == ("user_preferences", "user_preferences", WABA_ID)
    [change] = preference_changes(event)
    assert change.value == "stop" and change.category == "marketing_messages"
    assert (change.wa_id, change.phone, change.user_id, change.name) == ("447700900123", "447700900123", "GB.123",
                                                                          "Priya Raman")
    assert change.phone_number_id == BUSINESS["phone_number_id"]
    assert change.timestamp == datetime(2026, 1, 1, tzinfo=timezone.utc) and change.raw_timestamp == "1767225600"
    assert change.detail == "User requested to stop marketing messages"


@pytest.mark.parametrize("bad", [
    "not an object", 7, item(value="maybe"), item(category="service_messages"), item(wa_id=None),
    item(timestamp="yesterday"), item(timestamp=None), item(wa_id=123), item(value=["stop"]),
])
def test_unreadable_or_unknown_items_are_only_kept_raw(bad):
    parsed = parse_delivery(preferences_delivery([bad, item(value="resume")]), "sha", RECEIVED)
    [event] = parsed.events
    assert event.kind == "user_preferences" and event.payload["user_preferences"][0] == bad
    assert [c.value for c in preference_changes(event)] == ["resume"]  # the good item still counts


def test_a_change_without_a_list_is_kept_raw_as_invalid():
    parsed = parse_delivery(preferences_delivery({"wa_id": "1"}), "sha", RECEIVED)
    [event] = parsed.events
    assert event.kind == "invalid_user_preferences" and preference_changes(event) == []


def test_a_business_scoped_user_id_alone_identifies_the_person():
    [event] = parse_delivery(preferences_delivery([item(wa_id=None, user_id="GB.999")], contacts=[]),
                             "sha", RECEIVED).events
    [change] = preference_changes(event)
    assert (change.wa_id, change.phone, change.user_id) == (None, None, "GB.999")


def system(**fields) -> dict:
    return message("system", {"type": "user_preference_changed", **fields})


@pytest.mark.parametrize("msg, expected", [
    (system(body="User requested to stop marketing messages", value="stop"), "stop"),
    (system(body="...", category="marketing_messages", preference="RESUME"), "resume"),
    (system(body="...", user_preferences=[{"category": "marketing_messages", "value": "stop"}]), "stop"),
    (system(body="stop"), "stop"),
    # Free text is never interpreted, a contradiction is not evidence, another category is not ours.
    (system(body="User requested to stop marketing messages"), None),
    (system(value="stop", preference="resume"), None),
    (system(category="service_messages", value="stop"), None),
    (message("system", {"type": "user_changed_number", "value": "stop"}), None),
    (message("text", {"body": "stop", "type": "user_preference_changed"}), None),
    ({**system(), "system": "stop"}, None),
])
def test_system_preference_reads_structured_fields_only(msg, expected):
    assert system_preference(msg) == expected
