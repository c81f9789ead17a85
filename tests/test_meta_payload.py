"""Parsing Cloud API deliveries: envelope errors say what is wrong, invalid items are kept, updates counted."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from wa_archive.errors import EnvelopeError
from wa_archive.sources.meta.payload import check_envelope, count_updates, parse_delivery
from wa_archive.sources.meta.samples import envelope, message


class TestParser:
    def test_envelope_errors_say_what_is_wrong(self):
        with pytest.raises(EnvelopeError, match="JSON object"):
            check_envelope([])
        with pytest.raises(EnvelopeError, match="entry"):
            check_envelope({"object": "whatsapp_business_account", "entry": "x"})

    def test_invalid_items_are_kept_not_dropped(self):
        payload = envelope([{"type": "text"}], statuses=[{"status": "sent"}])
        parsed = parse_delivery(payload, "d", datetime.now(timezone.utc))
        assert parsed.messages == [] and parsed.statuses == []
        assert sorted(e.kind for e in parsed.events) == ["invalid_message", "invalid_status"]

    def test_counts_updates(self):
        payload = envelope([message("text", {"body": "a"}), message("text", {"body": "b"})],
                           statuses=[{"id": "w", "status": "read", "timestamp": "1"}])
        assert count_updates(check_envelope(payload)) == 3

    def test_missing_timestamp_falls_back_and_is_flagged(self):
        item = message("text", {"body": "a"})
        del item["timestamp"]
        received = datetime(2026, 1, 2, tzinfo=timezone.utc)
        [msg] = parse_delivery(envelope([item]), "d", received).messages
        assert msg.timestamp == received and "timestamp_missing" in msg.flags


def test_an_id_no_workflow_or_object_key_can_carry_is_refused_by_name():
    """Temporal caps workflow ids at 1,000 characters: a delivery carrying a longer message id would be
    refused by Temporal on every redelivery (503 forever), so the envelope check names it (400)."""
    check_envelope(envelope([message("text", {"body": "ok"}, mid="wamid." + "A" * 200)]))
    with pytest.raises(EnvelopeError, match="a message id is longer than 256 characters"):
        check_envelope(envelope([message("text", {"body": "x"}, mid="9" * 2000)]))
