"""The OpenAPI 3.1 document at /api/v1/openapi.json: a valid document, naming exactly the routes the
server registers, whose schemas the server's real answers match, status code by status code."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import make_settings
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid
from wa_archive.storage import FilesystemStore
from webhook.app import create_app
from webhook.deps import WebhookDeps

DOCUMENT_FILE = Path(__file__).parent.parent / "webhook" / "openapi.json"
DOC = json.loads(DOCUMENT_FILE.read_text())
BASE_URI = "urn:wa-archive:openapi"
REGISTRY = Registry().with_resource(BASE_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ROLES = {"sender", "auditor", "operator", "admin"}
PHONE = "447700900123"
PNID = "109327745812336"


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _at(pointer: str) -> Any:
    node: Any = DOC
    for part in pointer.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _response_pointer(method: str, path: str, status: int) -> str:
    """Where the documented response for `status` is (following a $ref to components/responses)."""
    responses = DOC["paths"][path][method]["responses"]
    key = str(status) if str(status) in responses else "default"
    assert key in responses, f"{method.upper()} {path} answered {status}, which it does not document"
    pointer = _pointer("paths", path, method, "responses", key)
    while "$ref" in _at(pointer):
        pointer = _at(pointer)["$ref"].lstrip("#")
    return pointer


def check(method: str, path: str, status: int, content_type: str, body: bytes) -> Any:
    """Assert the answer is documented and matches its schema; the decoded JSON body, if any."""
    pointer = _response_pointer(method, path, status)
    content = _at(pointer).get("content")
    if not content:
        return None
    media_type = content_type if content_type in content else "*/*"
    assert media_type in content, f"{method.upper()} {path} {status}: {content_type} is not documented"
    schema_pointer = pointer + _pointer("content", media_type, "schema")
    if not media_type.endswith("json"):
        assert _at(schema_pointer).get("type") == "string"
        return None
    document = json.loads(body)
    validator = Draft202012Validator({"$ref": f"{BASE_URI}#{schema_pointer}"}, registry=REGISTRY,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, f"{method.upper()} {path} {status} does not match its schema:\n" + "\n".join(errors[:10])
    return document


def test_the_document_is_openapi_3_1_with_roles_on_every_operation():
    assert DOC["openapi"].startswith("3.1")
    errors = [e.message for e in OpenAPIV31SpecValidator(DOC).iter_errors()]
    assert errors == []
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    for path, item in DOC["paths"].items():
        for method in set(item) & set(METHODS):
            operation = item[method]
            roles = operation["x-roles"]
            assert set(roles) <= ROLES, (method, path, roles)
            if roles:
                assert f"Roles: {', '.join(roles)}." in operation["description"], (method, path)
                assert "admin" in roles, f"admin may do everything, {method} {path} says not"
                assert operation["security"], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes)


def _described(path: str) -> bool:
    """Everything but the HTML pages (and their login form) is described; the codec under /ui is an API."""
    return not (path == "/" or path.startswith("/ui/")) or path.startswith("/ui/codec/")


def _openapi_path(resource: web.AbstractResource) -> str:
    """aiohttp's `/x/{name:regex}` as OpenAPI's `/x/{name}`."""
    info = resource.get_info()
    template = info.get("formatter") or info.get("path")
    assert isinstance(template, str)
    return template


async def test_every_route_is_documented_and_every_documented_route_exists(client, pool, tmp_path):
    app = create_app(WebhookDeps(settings=make_settings(), client=client, pool=pool,
                                 store=FilesystemStore(tmp_path / "objects")))
    routed = {(_openapi_path(route.resource), route.method.lower())
              for route in app.router.routes() if route.resource is not None and route.method != "HEAD"}
    routed = {(path, method) for path, method in routed if _described(path)}
    documented = {(path, method) for path, item in DOC["paths"].items() for method in set(item) & set(METHODS)}
    assert routed - documented == set(), "routes the document does not describe"
    assert documented - routed == set(), "documented routes the server does not have"
    # The API part is not vacuous: every /api/v1 route was found on both sides.
    assert {p for p, _ in routed if p.startswith("/api/v1/")} >= {"/api/v1/messages", "/api/v1/openapi.json",
                                                                  "/api/v1/contacts/{phone}"}


async def _call(stack, method: str, path: str, url_path: str | None = None, *, token: str | None = None,
                expect: int, **kwargs: Any) -> Any:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with stack.http.request(method, f"{stack.url}{url_path or path}", headers=headers,
                                  allow_redirects=False, **kwargs) as resp:
        body = await resp.read()
        assert resp.status == expect, (method, url_path or path, resp.status, body[:300])
        return check(method.lower(), path, resp.status, resp.content_type, body)


async def test_the_document_is_served_without_a_token(stack):
    async with stack.http.get(f"{stack.url}/api/v1/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert json.loads(await resp.read()) == DOC


async def test_real_answers_match_the_documented_schemas(stack):
    auditor, sender, operator = [await stack.token(role) for role in ("auditor", "sender", "operator")]

    # An inbound text and image, a send through the proxy, consent recorded by a sender.
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().hex[:10]}", mime_type="image/jpeg",
                                      content=b"\xff\xd8\xff" + os.urandom(3000)))
    text_id, image_id = wamid(), wamid()
    delivery = dumps(envelope([
        message("text", {"body": "Please confirm the transfer"}, mid=text_id),
        media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=image_id)]))
    await _call(stack, "POST", "/webhooks/meta", expect=200, data=delivery, headers=_signed(delivery))
    for mid in (text_id, image_id):
        await stack.wait_for_message(mid)
    sent = await _call(stack, "POST", "/graph/{phone_number_id}/messages", f"/graph/{PNID}/messages",
                       token=sender, expect=200, json={"messaging_product": "whatsapp", "to": f"+{PHONE}",
                                                       "type": "text", "text": {"body": "Booked."}})
    out_id = sent["messages"][0]["id"]
    # An outbound message is archived once Meta's "sent" status arrives, by the same webhook.
    status = dumps(envelope(statuses=[{"id": out_id, "status": "sent", "timestamp": str(int(time.time())),
                                       "recipient_id": PHONE}]))
    await _call(stack, "POST", "/webhooks/meta", expect=200, data=status, headers=_signed(status))
    await stack.wait_for_message(out_id)
    consent = {"phone": f"+{PHONE}", "state": "opted_in", "source": "web form", "evidence": "I agree"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    entry = await _call(stack, "POST", "/api/v1/consent", token=sender, expect=201, json=consent, headers=key)
    assert "contact_id" not in entry  # a sender is not told which profile the number resolved to
    await _call(stack, "POST", "/api/v1/consent", token=sender, expect=200, json=consent, headers=key)
    await _call(stack, "POST", "/api/v1/consent", token=sender, expect=409, json={**consent, "state": "opted_out"},
                headers=key)
    await _call(stack, "POST", "/api/v1/consent", token=sender, expect=400, json={**consent, "state": "maybe"})
    recorded = await _call(stack, "POST", "/api/v1/outbound", token=sender, expect=200, json={
        "phone_number_id": PNID, "request": {"messaging_product": "whatsapp", "to": PHONE, "type": "text",
                                             "text": {"body": "Recorded."}},
        "response": {"messages": [{"id": "wamid.OPENAPI" + uuid.uuid4().hex}]}})
    assert recorded["status"] == "accepted"
    await _call(stack, "POST", "/api/v1/outbound", token=sender, expect=400, json={"phone_number_id": PNID})

    # Reading: every status a reader can meet.
    page = await _call(stack, "GET", "/api/v1/messages", token=auditor, expect=200, params={"limit": "2"})
    assert len(page["items"]) == 2 and page["next_cursor"]
    await _call(stack, "GET", "/api/v1/messages", token=auditor, expect=200, params={"cursor": page["next_cursor"]})
    await _call(stack, "GET", "/api/v1/messages", token=auditor, expect=400, params={"limit": "0"})
    await _call(stack, "GET", "/api/v1/messages", token=auditor, expect=400, params={"colour": "red"})
    await _call(stack, "GET", "/api/v1/messages", expect=401)
    await _call(stack, "GET", "/api/v1/messages", token="wa_unknown", expect=401)
    await _call(stack, "GET", "/api/v1/messages", token=sender, expect=403)
    for mid in (text_id, image_id, out_id):
        shown = await _call(stack, "GET", "/api/v1/messages/{message_id}", f"/api/v1/messages/{mid}",
                            token=auditor, expect=200)
    assert shown["direction"] == "out" and shown["consent"]["state"] in ("opted_in", "unknown")
    await _call(stack, "GET", "/api/v1/messages/{message_id}", "/api/v1/messages/wamid.nothing", token=auditor,
                expect=404)
    await _call(stack, "GET", "/api/v1/conversations/{phone}", f"/api/v1/conversations/{PHONE}", token=auditor,
                expect=200)
    await _call(stack, "GET", "/api/v1/conversations/{phone}", "/api/v1/conversations/not-a-phone",
                token=auditor, expect=400)
    image = (await stack.wait_for_message(image_id))["media"][0]
    await _call(stack, "GET", "/api/v1/media/{media_id}", image["download_url"], token=auditor, expect=200)
    await _call(stack, "GET", "/api/v1/media/{media_id}", image["download_url"], token=auditor, expect=206,
                headers={"Range": "bytes=0-9"})
    await _call(stack, "GET", "/api/v1/media/{media_id}", image["download_url"], token=auditor, expect=416,
                headers={"Range": "bytes=999999-"})
    await _call(stack, "GET", "/api/v1/media/{media_id}", image["download_url"], token=auditor, expect=304,
                headers={"If-None-Match": f'"{image["sha256"]}"'})
    await _call(stack, "GET", "/api/v1/media/{media_id}", f"/api/v1/media/{uuid.uuid4()}", token=auditor,
                expect=404)
    await _call(stack, "GET", "/api/v1/contacts/{phone}", f"/api/v1/contacts/{PHONE}", token=auditor, expect=200)
    await _call(stack, "GET", "/api/v1/contacts/{phone}", "/api/v1/contacts/15550000000", token=auditor, expect=404)
    await _call(stack, "GET", "/api/v1/contacts/{phone}", f"/api/v1/contacts/{PHONE}", token=auditor, expect=400,
                params={"since": "yesterday"})
    await _call(stack, "GET", "/api/v1/consent/report", token=auditor, expect=200)
    await _call(stack, "GET", "/api/v1/consent/report", token=operator, expect=403)
    await _call(stack, "GET", "/api/v1/reconciliation", token=auditor, expect=200)
    await _call(stack, "GET", "/api/v1/reconciliation", token=auditor, expect=404, params={"date": "2026-01-01"})
    await _call(stack, "GET", "/api/v1/reconciliation", token=auditor, expect=400, params={"date": "01/01/2026"})

    # Sending, webhooks, the codec server, health and the document itself.
    await _call(stack, "POST", "/graph/{phone_number_id}/messages", f"/graph/{PNID}/messages", token=sender,
                expect=400, data=b"[1]")
    await _call(stack, "POST", "/graph/{phone_number_id}/messages", f"/graph/{PNID}/messages", token=auditor,
                expect=403, json={})
    await _call(stack, "POST", "/webhooks/meta", expect=401, data=b"{}", headers={"X-Hub-Signature-256": "sha256=0"})
    await _call(stack, "POST", "/webhooks/meta", expect=400, data=b"not json", headers=_signed(b"not json"))
    await _call(stack, "GET", "/webhooks/meta", expect=403, params={"hub.mode": "subscribe",
                                                                   "hub.verify_token": "wrong"})
    await _call(stack, "POST", "/webhooks/wasender", expect=401, json={})
    for codec in ("/codec/decode", "/codec/encode"):
        await _call(stack, "POST", codec, expect=401, json={"payloads": []})
        await _call(stack, "POST", codec, token=auditor, expect=403, json={"payloads": []})
    await _call(stack, "POST", "/codec/decode", token=operator, expect=200, json={"payloads": []})
    await _call(stack, "POST", "/codec/decode", token=operator, expect=415, data=b"{}",
                headers={"Content-Type": "text/plain"})
    await _call(stack, "POST", "/codec/decode", token=operator, expect=400, data=b"[",
                headers={"Content-Type": "application/json"})
    await _call(stack, "OPTIONS", "/codec/decode", expect=403, headers={"Origin": "https://elsewhere.example"})
    await _call(stack, "POST", "/ui/codec/decode", expect=401, json={"payloads": []})
    await _call(stack, "GET", "/healthz", expect=200)
    await _call(stack, "GET", "/readyz", expect=200)
    await _call(stack, "GET", "/healthz", "/healthz?x=%00", expect=400)
    await _call(stack, "GET", "/api/v1/openapi.json", expect=200)


def _signed(body: bytes) -> dict[str, str]:
    from tests.conftest import APP_SECRET
    from wa_archive.sources.signature import meta_signature

    return {"X-Hub-Signature-256": meta_signature(APP_SECRET, body), "Content-Type": "application/json"}


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_response_the_document_does_not_give_is_caught(status):
    """The checker itself: an undocumented status, or a body that breaks the schema, fails."""
    with pytest.raises(AssertionError, match="does not document"):
        check("get", "/healthz", status, "application/json", b"{}")
    with pytest.raises(AssertionError, match="does not match"):
        check("get", "/api/v1/messages", 200, "application/json", b'{"items": [{"id": 1}], "next_cursor": null}')
