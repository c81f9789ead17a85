"""Reading a Cloud API send request: what OutboundMessage records beside the request itself."""

from __future__ import annotations

import subprocess
import sys

from wa_archive.models import Contact, MediaRef
from wa_archive.sources.meta.outbound_request import read_send

RESPONSE = {"messaging_product": "whatsapp", "contacts": [{"input": "+447700900123", "wa_id": "447700900123"}],
            "messages": [{"id": "wamid.OUT1"}]}


def template_request(header: dict | None = None, **template: object) -> dict:
    components: list[dict] = [{"type": "body", "parameters": [{"type": "text", "text": "Priya"}]}]
    if header is not None:
        components.insert(0, {"type": "header", "parameters": [{"type": "image", "image": header}]})
    return {"messaging_product": "whatsapp", "to": "+44 7700-900123", "type": "template",
            "template": {"name": "transfer_confirmation", "language": {"code": "en_GB"},
                         "components": components, **template}}


def test_template_send_by_link_gives_its_template_and_header_media_to_fetch_by_link():
    request = template_request({"link": "https://cdn.example.com/h.png"})
    content = read_send(request, RESPONSE)
    assert content.type == "template"
    assert content.contact == Contact(phone="447700900123", wa_id="447700900123")
    assert content.text is None  # rendered from the template snapshot, not read from the request
    assert content.send_template == request["template"]
    assert (content.template_name, content.template_language) == ("transfer_confirmation", "en_GB")
    assert content.media == MediaRef(media_id="https://cdn.example.com/h.png", kind="image",
                                     link="https://cdn.example.com/h.png")


def test_header_media_with_an_id_is_fetched_through_the_graph_api_not_its_link():
    content = read_send(template_request({"id": "1013859600285441", "link": "https://cdn.example.com/h.png"}),
                        RESPONSE)
    assert content.media == MediaRef(media_id="1013859600285441", kind="image", link=None)


def test_template_without_header_media_or_language():
    content = read_send(template_request(None, language=None), RESPONSE)
    assert content.media is None and content.template_language is None
    assert content.template_name == "transfer_confirmation"


def test_text_send_gives_its_body_and_no_media():
    request = {"messaging_product": "whatsapp", "to": "+447700900123", "type": "text",
               "text": {"body": "Your statement is ready."}}
    content = read_send(request, RESPONSE)
    assert (content.type, content.text, content.media) == ("text", "Your statement is ready.", None)
    assert content.send_template == {} and content.template_name is None and content.template_language is None


def test_type_defaults_to_text_as_the_cloud_api_does():
    content = read_send({"to": "447700900123", "text": {"body": "hi"}}, RESPONSE)
    assert (content.type, content.text) == ("text", "hi")


def test_media_send_gives_its_caption_and_media_with_file_name():
    request = {"to": "447700900123", "type": "document",
               "document": {"id": "42", "caption": "Statement, March", "filename": "statement.pdf"}}
    content = read_send(request, RESPONSE)
    assert content.text == "Statement, March"
    assert content.media == MediaRef(media_id="42", kind="document", filename="statement.pdf")


def test_media_with_neither_id_nor_link_is_still_attempted_under_a_placeholder_id():
    content = read_send({"to": "447700900123", "type": "image", "image": {}}, RESPONSE)
    assert content.media == MediaRef(media_id="?", kind="image") and content.text is None


def test_a_type_whose_object_is_not_an_object_has_no_text():
    content = read_send({"to": "447700900123", "type": "text", "text": "not an object"}, RESPONSE)
    assert content.text is None and content.media is None


def test_recipient_that_is_no_phone_and_an_answer_without_contacts():
    content = read_send({"to": "GB.8830abc", "type": "text", "text": {"body": "x"}}, {"messages": [{"id": "w"}]})
    assert content.contact == Contact()
    content = read_send({"type": "text", "text": {"body": "x"}}, {"contacts": ["447700900123"]})
    assert content.contact == Contact()


def test_the_module_imports_nothing_the_workflow_sandbox_rejects():
    """The workflow imports it: no I/O library may come with it."""
    code = ("import sys, wa_archive.sources.meta.outbound_request; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'aiohttp', 'aiobotocore', 'asyncpg', 'cryptography', 'jinja2', 'structlog', 'temporalio'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
