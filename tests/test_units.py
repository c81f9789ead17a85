"""Pure functions: key layout, signatures, hash decoding, payload parsing, configuration errors."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from wa_archive.sources.meta.samples import envelope, message
from wa_archive.config import load_settings
from wa_archive.errors import ConfigError, EnvelopeError
from wa_archive.archive.hashing import decode_sha256
from wa_archive.archive.keys import contact_key, extension_for, media_object_key, normalize_phone, safe_id
from wa_archive.sources.meta.payload import check_envelope, count_updates, parse_delivery
from wa_archive.sources.signature import meta_signature, meta_signature_ok


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


class TestSignature:
    def test_valid_and_invalid(self):
        body = '{"a":"\\u00e4"}'.encode()
        sig = meta_signature("secret", body)
        assert meta_signature_ok("secret", body, sig)
        assert meta_signature_ok("secret", body, sig.upper().replace("SHA256=", "sha256="))
        assert not meta_signature_ok("other", body, sig)
        assert not meta_signature_ok("secret", body + b" ", sig)
        assert not meta_signature_ok("secret", body, None)
        assert not meta_signature_ok("secret", body, sig[len("sha256="):])


class TestHashing:
    def test_hex_and_base64_decode_to_the_same_digest(self):
        digest = hashlib.sha256(b"x").digest()
        assert decode_sha256(digest.hex()) == digest
        assert decode_sha256(base64.b64encode(digest).decode()) == digest
        assert decode_sha256(base64.urlsafe_b64encode(digest).decode().rstrip("=")) == digest
        assert decode_sha256("not a hash") is None and decode_sha256(None) is None


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


class TestConfig:
    def test_invalid_value_names_the_variable(self, monkeypatch):
        monkeypatch.setenv("WA_ARCHIVE_HTTP_PORT", "eighty")
        with pytest.raises(ConfigError, match="WA_ARCHIVE_HTTP_PORT"):
            load_settings()

    def test_bad_storage_url(self, monkeypatch):
        monkeypatch.setenv("WA_ARCHIVE_STORAGE_URL", "ftp://x")
        with pytest.raises(ConfigError, match="WA_ARCHIVE_STORAGE_URL"):
            load_settings()

    def test_cli_fails_with_one_clear_line(self, tmp_path):
        env = {**os.environ, "WA_ARCHIVE_RETRY_MAX_ATTEMPTS": "0", "WA_ARCHIVE_DATA_DIR": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-m", "wa_archive.cli", "failures"], env=env,
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and "WA_ARCHIVE_RETRY_MAX_ATTEMPTS" in proc.stderr

    def test_show_without_database_says_what_to_do(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
        env["WA_ARCHIVE_DATA_DIR"] = str(tmp_path)
        proc = subprocess.run([sys.executable, "-m", "wa_archive.cli", "show", "wamid.x"], env=env,
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2 and "WA_ARCHIVE_DATABASE_URL" in proc.stderr


class TestLinkGuard:
    async def test_names_resolving_to_internal_addresses_are_refused(self):
        from wa_archive.errors import LinkRefused
        from wa_archive.sources.links import Allowlist, LinkFetcher

        fetcher = LinkFetcher(Allowlist(""), max_bytes=1000, timeout=5)
        try:
            for url in ("http://localhost:9/x", "http://[::1]:9/x", "http://10.1.2.3/x",
                        "http://[::ffff:127.0.0.1]/x", "ftp://example.com/x", "http:///nohost"):
                with pytest.raises(LinkRefused):
                    async with fetcher.download(url):
                        pass
        finally:
            await fetcher.close()

    def test_allowlist_admits_named_hosts_and_networks(self):
        import ipaddress

        from wa_archive.sources.links import Allowlist, forbidden

        allow = Allowlist("media.internal, 10.0.0.0/8 ,127.0.0.1")
        assert allow.admits_host("MEDIA.internal") and not allow.admits_host("other")
        assert allow.admits_ip(ipaddress.ip_address("10.9.9.9"))
        assert allow.admits_ip(ipaddress.ip_address("127.0.0.1"))
        assert not allow.admits_ip(ipaddress.ip_address("169.254.169.254"))
        assert forbidden(ipaddress.ip_address("169.254.169.254"))
        assert not forbidden(ipaddress.ip_address("93.184.216.34"))


class TestTemplates:
    def test_snapshot_ignores_status_and_quality(self):
        from wa_archive.sources.meta.templates import snapshot

        base = {"name": "t", "language": "en", "components": [{"type": "BODY", "text": "Hi {{1}}"}]}
        a = snapshot({**base, "status": "APPROVED", "quality_score": {"score": "GREEN"}})
        b = snapshot({**base, "status": "PAUSED"})
        c = snapshot({**base, "components": [{"type": "BODY", "text": "Hello {{1}}"}]})
        assert a.sha256 == b.sha256 != c.sha256
        assert a.canonical == '{"components":[{"text":"Hi {{1}}","type":"BODY"}],"language":"en","name":"t"}'

    def test_render_named_parameters_currency_and_url_button(self):
        from wa_archive.sources.meta.templates import render

        definition = {"components": [
            {"type": "HEADER", "format": "TEXT", "text": "Order {{order}}"},
            {"type": "BODY", "text": "Hi {{first_name}}, you paid {{amount}}. {{unknown}}"},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://x.example/t/{{1}}"}]}]}
        send = {"components": [
            {"type": "header", "parameters": [{"type": "text", "parameter_name": "order", "text": "A-1"}]},
            {"type": "body", "parameters": [
                {"type": "currency", "parameter_name": "amount",
                 "currency": {"fallback_value": "£12.50", "code": "GBP", "amount_1000": 12500}},
                {"type": "text", "parameter_name": "first_name", "text": "Ann"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A-1"}]}]}
        assert render(definition, send).splitlines() == [
            "Order A-1", "Hi Ann, you paid £12.50. {{unknown}}", "[Track (https://x.example/t/A-1)]"]


# WASender payloads ----------------------------------------------------------------------------


def test_parser_edits_reactions_wrappers_and_odd_shapes():
    from datetime import datetime, timezone

    from wa_archive.sources.wasender.payload import normalise_timestamp, parse_wasender

    now = datetime.now(timezone.utc)
    key = {"id": "E1", "fromMe": True, "remoteJid": "447700900123@s.whatsapp.net"}
    edit = {"key": key, "message": {"protocolMessage": {"type": 14, "key": {"id": "ORIG"},
                                                        "editedMessage": {"conversation": "corrected"}}}}
    react = {"key": dict(key, id="R1"), "message": {"reactionMessage": {"key": {"id": "ORIG"}, "text": "👍"}}}
    wrapped = {"key": dict(key, id="D1"), "message": {"documentWithCaptionMessage": {"message": {"documentMessage": {
        "url": "https://mmg.whatsapp.net/x", "mediaKey": base64.b64encode(b"k" * 32).decode(), "mimetype": "application/pdf",
        "fileName": "mandate.pdf", "caption": "signed", "fileLength": "12"}}}}}
    voice = {"key": dict(key, id="V1"), "message": {"audioMessage": {"directPath": "/v/t62/abc", "ptt": True,
                                                                      "mediaKey": base64.b64encode(b"k" * 32).decode()}}}
    no_key = {"key": dict(key, id="N1"), "message": {"imageMessage": {"url": "https://mmg.whatsapp.net/y"}}}
    odd = {"key": dict(key, id="O1"), "message": {"brandNewMessage": {"x": 1}}}
    parsed = parse_wasender({"event": "message.sent", "timestamp": 1792496120000,
                             "data": [edit, react, wrapped, voice, no_key, odd, {"not": "a message"}]}, "sha", now)
    by_id = {m.message_id: m for m in parsed.messages}
    assert (by_id["E1"].type, by_id["E1"].related_message_id, by_id["E1"].text) == ("edit", "ORIG", "corrected")
    assert (by_id["R1"].type, by_id["R1"].related_message_id) == ("reaction", "ORIG")
    doc = by_id["D1"]
    assert doc.type == "document" and doc.text == "signed" and doc.media[0].filename == "mandate.pdf"
    assert doc.media[0].encrypted.file_length == 12 and doc.media[0].encrypted.message_field == "documentMessage"
    assert by_id["V1"].media[0].kind == "ptt" and by_id["V1"].media[0].encrypted.direct_path == "/v/t62/abc"
    assert by_id["N1"].media == [] and "media_key_missing" in by_id["N1"].flags
    assert by_id["O1"].type == "brandNew" and "unknown_type" in by_id["O1"].flags
    assert all(m.direction == "out" and m.source == "wasender" for m in parsed.messages)
    assert all(m.timestamp == normalise_timestamp(1792496120) for m in parsed.messages)  # ms → s
    assert [(e.kind, e.payload) for e in parsed.events] == [("unparseable", {"not": "a message"})]
