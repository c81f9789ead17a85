"""What the archive accepts of a Cloud API send and of Meta's answer (pure functions, no services)."""

from __future__ import annotations

import json

from wa_archive.sources.meta.sends import answer_document, contacts_refusal, send_refusal, sent_message_id


def test_the_wamid_is_read_only_from_messages_0_id():
    assert sent_message_id({"messages": [{"id": "wamid.A"}]}) == "wamid.A"
    for answer in ({}, {"messages": []}, {"messages": [{"id": ""}]}, {"messages": [{"id": 5}]},
                   {"messages": "wamid.A"}, {"messages": ["wamid.A"]}, ["wamid.A"], None):
        assert sent_message_id(answer) is None, answer


def test_metas_answer_is_kept_as_a_json_object_whatever_it_was():
    assert answer_document(json.dumps({"messages": [{"id": "wamid.A"}]}).encode()) == {"messages": [{"id": "wamid.A"}]}
    assert answer_document(b"[1, 2]") == {"raw": [1, 2]}
    assert answer_document(b"<html>bad gateway</html>") == {"raw": "<html>bad gateway</html>"}
    assert answer_document(b"\xff\xfe") == {"raw": "\ufffd\ufffd"}


def test_only_plain_graph_ids_may_reach_the_graph_api():
    assert send_refusal("1234567890", None) is None
    assert send_refusal("1234567890", {"type": "image", "image": {"id": "987"}}) is None
    assert "phone_number_id" in send_refusal("../me", None)
    refused = send_refusal("123", {"type": "image", "image": {"id": "987/../../me"}})
    assert refused is not None and "image.id" in refused
    template = {"template": {"components": [{"parameters": [{"type": "document", "document": {"id": "x?y"}}]}]}}
    assert "template.components[0].parameters[0].document.id" in send_refusal("123", template)


def test_a_recipient_id_supplied_by_the_caller_must_be_digits():
    assert contacts_refusal({}) is None
    assert contacts_refusal({"contacts": [{"wa_id": "447700900123"}, {"input": "+44"}]}) is None
    assert contacts_refusal({"contacts": {"wa_id": "1"}}) == "response.contacts must be a list"
    assert contacts_refusal({"contacts": [{"wa_id": "447700900123"}, {"wa_id": "<script>"}]}) == (
        "response.contacts[1].wa_id must be a WhatsApp id of 1 to 20 digits")
    assert contacts_refusal({"contacts": [{"wa_id": 447700900123}]}) is not None
