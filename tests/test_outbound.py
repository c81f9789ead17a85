"""Outbound capture end to end: the send proxy and record API, statuses in any order, template
snapshots that follow edits, header media by link and by id, SSRF refusals, tokens and roles."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import os
import uuid

from tests.conftest import wait_until
from wa_archive.db import queries
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import WABA_ID, dumps, envelope

PNID = "109327745812336"

TEMPLATE_V1 = {
    "id": "7001", "name": "transfer_confirmation", "language": "en_GB", "status": "APPROVED",
    "category": "UTILITY", "parameter_format": "POSITIONAL",
    "components": [
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hello {{1}}, your transfer of {{2}} to account ending {{3}} is booked."},
        {"type": "FOOTER", "text": "Example Bank plc"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Confirm"},
                                        {"type": "QUICK_REPLY", "text": "Dispute"}]},
    ],
}


def template_send(header: dict, to: str = "+447700900123") -> dict:
    return {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
        "template": {
            "name": "transfer_confirmation", "language": {"code": "en_GB"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": header}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Priya"},
                                                {"type": "text", "text": "2,500 GBP"},
                                                {"type": "text", "text": "4471"}]},
            ],
        },
    }


def status_body(wamid: str, status: str, ts: int, **extra) -> bytes:
    item = {"id": wamid, "status": status, "timestamp": str(ts), "recipient_id": "447700900123", **extra}
    return dumps(envelope(statuses=[item]))


async def _signals_handled(stack, wamid: str, count: int) -> bool:
    """Whether the message's OutboundMessage run has taken `count` signals and finished a workflow task
    after the last of them: what those signals could cause has happened."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.service import RPCError

    from tests.conftest import CONTACT_SECRET
    from wa_archive.archive.keys import outbound_workflow_id

    handle = stack.client.get_workflow_handle(outbound_workflow_id(CONTACT_SECRET, wamid))
    try:
        kinds = [event.event_type async for event in handle.fetch_history_events()]
    except RPCError:  # not started yet
        return False
    signalled = [i for i, kind in enumerate(kinds) if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    tasks = [i for i, kind in enumerate(kinds) if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    return len(signalled) >= count and bool(tasks) and tasks[-1] > signalled[-1]


async def _proxy(stack, token: str | None, body: dict) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with stack.http.post(f"{stack.url}/graph/{PNID}/messages", json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _record(stack, token: str | None, payload: dict) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with stack.http.post(f"{stack.url}/api/v1/outbound", json=payload, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def _file(stack, content: bytes, mime: str = "image/png") -> str:
    name = f"{uuid.uuid4().hex}.png"
    stack.graph.files[name] = FakeMedia(name, mime_type=mime, content=content)
    return f"{stack.graph.base_url}/files/{name}"


async def test_template_versions_are_snapshotted_with_their_own_text_and_header(stack):
    token = await stack.token("sender")
    stack.graph.set_template(WABA_ID, copy.deepcopy(TEMPLATE_V1))
    image_v1 = b"\x89PNG version one " + os.urandom(3000)
    status, answer = await _proxy(stack, token, template_send({"link": _file(stack, image_v1)}))
    assert status == 200
    first = answer["messages"][0]["id"]
    await stack.post(status_body(first, "sent", 1792493902))
    msg1 = await stack.wait_for_message(first)

    # Marketing edits the template: new body text; the next send also uses a new header image.
    edited = copy.deepcopy(TEMPLATE_V1)
    edited["components"][1]["text"] = "Dear {{1}}: {{2}} is on its way to the account ending {{3}}."
    edited["quality_score"] = {"score": "GREEN"}  # not content: must not change the snapshot
    stack.graph.set_template(WABA_ID, edited)
    image_v2 = b"\x89PNG version two " + os.urandom(3000)
    _, answer = await _proxy(stack, token, template_send({"link": _file(stack, image_v2)}))
    second = answer["messages"][0]["id"]
    await stack.post(status_body(second, "sent", 1792497000))
    msg2 = await stack.wait_for_message(second)
    _, answer = await _proxy(stack, token, template_send({"link": _file(stack, image_v2)}))
    third = answer["messages"][0]["id"]
    await stack.post(status_body(third, "sent", 1792498000))
    msg3 = await stack.wait_for_message(third)

    assert msg1["direction"] == "out" and msg1["type"] == "template"
    assert msg1["rendered_text"].splitlines() == [
        "[image]", "Hello Priya, your transfer of 2,500 GBP to account ending 4471 is booked.",
        "Example Bank plc", "[Confirm]", "[Dispute]"]
    assert "Dear Priya: 2,500 GBP is on its way" in msg2["rendered_text"]
    assert msg1["template"]["sha256"] != msg2["template"]["sha256"]
    assert msg3["template"]["sha256"] == msg2["template"]["sha256"]
    assert await stack.pool.fetchval("SELECT count(*) FROM template_snapshots") == 2
    for msg, image in ((msg1, image_v1), (msg2, image_v2), (msg3, image_v2)):
        [media] = msg["media"]
        assert media["status"] == "archived" and media["sha256"] == hashlib.sha256(image).hexdigest()
        assert await stack.read_object(media["storage_key"]) == image
    snap = msg1["template"]
    assert snap["name"] == "transfer_confirmation" and snap["language"] == "en_GB"
    assert snap["definition"]["components"][1]["text"].startswith("Hello {{1}}")
    canonical = await stack.pool.fetchval("SELECT canonical FROM template_snapshots WHERE sha256 = $1", snap["sha256"])
    assert hashlib.sha256(canonical.encode()).hexdigest() == snap["sha256"]
    assert msg1["timestamp"].startswith("2026-10-20T")  # the moment it reached `sent`
    found = await queries.search_messages(stack.pool, phone=None, since=None, until=None, limit=10,
                                          template="transfer_confirmation", direction="out")
    assert {m["id"] for m in found} == {first, second, third}
    auditor = await stack.token("auditor")
    async with stack.http.get(f"{stack.url}/api/v1/messages", params={"template": "transfer_confirmation"},
                              headers={"Authorization": f"Bearer {auditor}"}) as resp:
        assert [m["id"] for m in (await resp.json())["items"]] == [third, second, first]


async def test_status_before_record_and_header_media_by_id(stack):
    token = await stack.token("sender")
    stack.graph.set_template(WABA_ID, copy.deepcopy(TEMPLATE_V1))
    header = stack.graph.add(FakeMedia(str(uuid.uuid4().int % 10**15), mime_type="image/png", content=os.urandom(2000)))
    wamid = "wamid.OUT" + uuid.uuid4().hex
    # Meta's status webhooks arrive before the application posts its record.
    for status, ts in (("sent", 1792493902), ("delivered", 1792493910)):
        assert (await stack.post(status_body(wamid, status, ts)))[0] == 200
    await wait_until(lambda: _signals_handled(stack, wamid, 2), "both statuses handled by the OutboundMessage run")
    assert await queries.get_message(stack.pool, wamid) is None
    request = template_send({"id": header.media_id})
    response = {"messaging_product": "whatsapp", "contacts": [{"input": "+447700900123", "wa_id": "447700900123"}],
                "messages": [{"id": wamid}]}
    status, answer = await _record(stack, token, {"phone_number_id": PNID, "request": request, "response": response})
    assert status == 200 and answer == {"status": "accepted", "message_id": wamid}
    msg = await stack.wait_for_message(wamid)
    assert [s["status"] for s in msg["statuses"]] == ["sent", "delivered"]
    assert msg["media"][0]["sha256"] == header.declared_sha256 and msg["media"][0]["id"] == header.media_id
    assert msg["contact"]["phone"] == "447700900123"
    assert msg["payload"]["request"] == request and msg["payload"]["response"] == response


async def test_sent_never_arrives_then_archived_and_flagged(stack_factory):
    stack = await stack_factory(outbound_sent_wait=1.0, meta_waba_id=WABA_ID)
    token = await stack.token("sender")
    stack.graph.set_template(WABA_ID, copy.deepcopy(TEMPLATE_V1))
    _, answer = await _proxy(stack, token, template_send({"link": _file(stack, b"\x89PNG x")}))
    msg = await stack.wait_for_message(answer["messages"][0]["id"])
    assert "sent_status_missing" in msg["flags"] and msg["template"]["sha256"]


async def test_failed_status_is_recorded_with_metas_error(stack):
    token = await stack.token("sender")
    _, answer = await _proxy(stack, token, {"messaging_product": "whatsapp", "to": "+447700900123",
                                           "type": "text", "text": {"body": "Your statement is ready."}})
    wamid = answer["messages"][0]["id"]
    error = {"code": 131026, "title": "Message undeliverable"}
    await stack.post(status_body(wamid, "failed", 1792495120, errors=[error]))
    msg = await stack.wait_for_message(wamid)
    assert msg["type"] == "text" and msg["rendered_text"] == "Your statement is ready."
    assert "send_failed" in msg["flags"]
    payload = await stack.pool.fetchval("SELECT payload FROM status_events WHERE message_id = $1", wamid)
    assert payload["errors"] == [error]


async def test_meta_rejecting_a_send_is_returned_unchanged_and_recorded(stack):
    token = await stack.token("sender")
    stack.graph.send_error = (400, {"message": "(#131009) Parameter value is not valid", "code": 131009})
    try:
        body = {"messaging_product": "whatsapp", "to": "+447700900123", "type": "text", "text": {"body": "x"}}
        status, answer = await _proxy(stack, token, body)
    finally:
        stack.graph.send_error = None
    assert status == 400 and answer == {"error": {"message": "(#131009) Parameter value is not valid", "code": 131009}}
    row = await stack.pool.fetchrow("SELECT * FROM outbound_sends ORDER BY id DESC LIMIT 1")
    assert row["accepted"] is False and row["message_id"] is None and row["http_status"] == 400
    assert row["request"] == body and row["response"]["error"]["code"] == 131009


async def test_tokens_and_roles_guard_the_proxy_and_record_api(stack):
    from wa_archive.access.tokens import revoke_token

    body = {"messaging_product": "whatsapp", "to": "+1", "type": "text", "text": {"body": "x"}}
    record = {"phone_number_id": PNID, "request": body, "response": {"messages": [{"id": "wamid.x"}]}}
    sends_before = len(stack.graph.sends)
    for call, arg in ((_proxy, body), (_record, record)):
        status, answer = await call(stack, None, arg)
        assert status == 401 and "token" in answer["error"]
        assert (await call(stack, "wa_not-a-token", arg))[0] == 401
        auditor = await stack.token("auditor")
        status, answer = await call(stack, auditor, arg)
        assert status == 403 and "sender" in answer["error"]
    name = f"old-{uuid.uuid4().hex[:6]}"
    revoked = await stack.token("sender", name=name)
    await revoke_token(stack.pool, name)
    assert (await _proxy(stack, revoked, body))[0] == 401
    assert len(stack.graph.sends) == sends_before, "nothing was relayed without a valid sender token"
    admin = await stack.token("admin")
    assert (await _record(stack, admin, {"phone_number_id": PNID, "request": body}))[0] == 400


async def test_links_to_internal_addresses_are_refused(stack_factory):
    stack = await stack_factory(media_fetch_allowlist="")
    token = await stack.token("sender")
    internal = _file(stack, b"secret")  # the fake host is on 127.0.0.1, not allow-listed here
    results = {}
    for link in (internal, "http://169.254.169.254/latest/meta-data/iam", "file:///etc/passwd"):
        body = {"messaging_product": "whatsapp", "to": "+447700900123", "type": "image",
                "image": {"link": link, "caption": "statement"}}
        _, answer = await _proxy(stack, token, body)
        wamid = answer["messages"][0]["id"]
        await stack.post(status_body(wamid, "sent", 1792493902))
        failure = await stack.wait_for_failure(wamid)
        results[link] = failure
        msg = await stack.wait_for_message(wamid)
        assert msg["media"][0]["status"] == "failed" and msg["rendered_text"] == "statement"
    for failure in results.values():
        assert failure["retry_state"] == "NON_RETRYABLE_FAILURE" and len(failure["attempts"]) == 1
        assert failure["attempts"][0]["error_type"] == "LinkRefused"
    assert stack.graph.files[internal.rsplit("/", 1)[1]].downloads == 0


async def test_duplicate_status_webhooks_give_one_timeline_entry_each(stack):
    token = await stack.token("sender")
    _, answer = await _proxy(stack, token, {"messaging_product": "whatsapp", "to": "+447700900123",
                                           "type": "text", "text": {"body": "hello"}})
    wamid = answer["messages"][0]["id"]
    sent, read = status_body(wamid, "sent", 1792493902), status_body(wamid, "read", 1792493999)
    await asyncio.gather(*(stack.post(b) for b in (sent, sent, read, sent, read)))
    msg = await stack.wait_for_message(wamid)
    from tests.conftest import CONTACT_SECRET
    from wa_archive.archive.keys import outbound_workflow_id

    # The row is written before the run ends: wait for the run itself, so the late statuses below
    # arrive after a finished workflow, however loaded the machine.
    handle = stack.client.get_workflow_handle(outbound_workflow_id(CONTACT_SECRET, wamid))
    await asyncio.wait_for(handle.result(), 60)
    first_run = (await handle.describe()).run_id
    await stack.post(read)
    await stack.post(status_body(wamid, "delivered", 1792493950))  # late, after the archive
    msg = await queries.get_message(stack.pool, wamid)
    assert [s["status"] for s in msg["statuses"]] == ["sent", "delivered", "read"]
    desc = await handle.describe()
    assert desc.status.name == "COMPLETED" and desc.run_id == first_run, "a late status must not start a second run"
    # Even when the archived-check is raced, signalling a finished workflow starts nothing.
    from wa_archive.archive.starter import signal_outbound
    from wa_archive.models import OutboundStart, StatusSignal
    from wa_archive.names import SIGNAL_STATUS

    started = await signal_outbound(stack.client, OutboundStart(message_id=wamid), SIGNAL_STATUS,
                                    StatusSignal(status="read"), task_queue=stack.settings.task_queue,
                                    contact_secret=CONTACT_SECRET, contact=None)
    assert started is False
    desc = await stack.client.get_workflow_handle(outbound_workflow_id(CONTACT_SECRET, wamid)).describe()
    assert desc.status.name == "COMPLETED"


async def test_proxy_answers_502_when_meta_is_unreachable(stack_factory):
    from wa_archive.devstack.embedded import free_port

    stack = await stack_factory(meta_graph_url=f"http://127.0.0.1:{free_port()}/v23.0")
    token = await stack.token("sender")
    status, answer = await _proxy(stack, token, {"messaging_product": "whatsapp", "to": "+1",
                                                 "type": "text", "text": {"body": "x"}})
    assert status == 502 and "nothing was sent" in answer["error"]
    assert await stack.pool.fetchval("SELECT count(*) FROM outbound_sends") == 0
