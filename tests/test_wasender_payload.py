"""Parsing WASender webhooks: edits, reactions, wrapped media, odd shapes and unknown types."""

from __future__ import annotations

import base64


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
