"""Object keys and contact keys: escaped ids that never collide, dates in UTC, extensions from MIME types."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from wa_archive.archive.keys import (
    contact_key,
    extension_for,
    media_object_key,
    message_key,
    message_workflow_id,
    normalize_phone,
    outbound_workflow_id,
    safe_id,
)


class TestKeys:
    def test_safe_id_is_injective_and_key_safe(self):
        ids = ["wamid.a/b", "wamid.a+b", "wamid.a=b", "wamid.a~2Fb", "wamid.a_b"]
        escaped = [safe_id(i) for i in ids]
        assert len(set(escaped)) == len(ids)
        assert all(set(e) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~") for e in escaped)
        assert safe_id("wamid.a/b") == "wamid.a~2Fb" and safe_id("~") == "~7E"

    def test_key_uses_message_time_in_utc_and_mime_extension(self):
        ts = datetime(2026, 3, 1, 0, 30, tzinfo=timezone.utc)
        key = media_object_key("wamid.X/Y+Z==", ts.astimezone(), "447700900123", "audio/ogg; codecs=opus")
        assert key == "archive/2026/03/01/447700900123/wamid.X~2FY~2BZ~3D~3D.ogg"
        assert media_object_key("m", ts, "c", "image/jpeg", position=2).endswith("/m-2.jpg")

    @pytest.mark.parametrize("mime,ext", [("image/jpeg", "jpg"), ("application/pdf", "pdf"),
                                          (None, "bin"), ("application/x-weird+zip", "bin")])
    def test_extensions(self, mime, ext):
        assert extension_for(mime) == ext

    def test_phone_normalization_and_contact_key(self):
        assert normalize_phone("+44 7700-900123") == "447700900123"
        assert normalize_phone("GB.8830219475520193") is None
        assert contact_key("s", "+447700900123") == contact_key("s", "447700900123")
        assert contact_key("s", "447700900123") != contact_key("t", "447700900123")
        assert "447700900123" not in contact_key("s", "447700900123")

    def test_message_key_and_workflow_ids(self):
        wamid = "wamid.HBgLMTY1MDUxMjM0NTYVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"  # Meta's example: holds 16505123456
        key = message_key("s", wamid)
        assert key == message_key("s", wamid) and re.fullmatch(r"mk_[0-9a-f]{32}", key)  # stable, key-safe
        assert key != message_key("t", wamid) and key != message_key("s", wamid + "A")
        assert message_workflow_id("s", wamid) == f"wa-msg-{key}" and outbound_workflow_id("s", wamid) == f"wa-out-{key}"
        # Hashed apart from contacts: an id spelled like a phone number does not give its contact key.
        assert message_key("s", "447700900123")[3:] != contact_key("s", "447700900123")[3:]
