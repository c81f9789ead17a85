"""Echoes: what a coexistence business sends from the WhatsApp Business app arrives only as
`smb_message_echoes`. Each echo is archived as an outbound message (media fetched by id and hashed,
flagged `business_app`), its statuses join it in either order without leaving an outbound workflow
waiting for a send record, malformed echoes are kept raw, and a forged echo is refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid

from temporalio.client import WorkflowExecutionStatus

from tests.conftest import CONTACT_SECRET
from tests.test_outbound import status_body
from tests.test_temporal_trust import built_request, closed, raw_client, running_worker
from wa_archive.archive.keys import outbound_workflow_id
from wa_archive.db import queries
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, echo, echo_envelope, wamid

USER = "447700900123"


async def outbound_workflows(stack) -> list:
    query = f"TaskQueue = '{stack.settings.task_queue}' AND WorkflowType = 'OutboundMessage'"
    return [wf async for wf in stack.client.list_workflows(query)]


async def wait_for_statuses(stack, message_id: str, expected: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await queries.get_message(stack.pool, message_id)
        if msg is not None and {s["status"] for s in msg["statuses"]} == expected:
            return msg
        await asyncio.sleep(0.1)
    raise AssertionError(f"{message_id} never had the statuses {expected}")


async def test_an_echo_with_an_image_is_archived_as_an_outbound_message_with_its_media_hash(stack):
    content = os.urandom(40_000)
    media = stack.graph.add(FakeMedia(f"echo-{uuid.uuid4().hex[:12]}", mime_type="image/jpeg", content=content))
    mid = wamid()
    item = echo("image", {"id": media.media_id, "mime_type": "image/jpeg", "sha256": media.sha256_b64(),
                          "caption": "your signed mandate"}, mid=mid)
    status, answer = await stack.post(dumps(echo_envelope([item])))
    assert status == 200 and answer["updates"] == 1
    msg = await stack.wait_for_message(mid)
    assert msg["direction"] == "out" and msg["type"] == "image"
    assert "business_app" in msg["flags"]
    assert msg["contact"]["phone"] == USER and msg["contact"]["wa_id"] == USER
    assert msg["text"] == "your signed mandate" and msg["payload"] == item
    assert msg["archive_status"] == "archived"
    [m] = msg["media"]
    assert m["status"] == "archived" and m["sha256"] == hashlib.sha256(content).hexdigest()
    assert await stack.read_object(m["storage_key"]) == content
    assert [d["sha256"] for d in msg["deliveries"]] == [answer["delivery"]]
    assert await stack.pool.fetchval(
        "SELECT count(*) FROM ledger_leaves WHERE kind = 'message' AND record_id = $1", mid) == 1
    # Nothing of it is kept as an unhandled field any more.
    assert await stack.pool.fetchval("SELECT count(*) FROM webhook_events WHERE delivery_sha256 = $1",
                                     answer["delivery"]) == 0
    # The auditors' API shows the flag too.
    token = await stack.token("auditor")
    async with stack.http.get(f"{stack.url}/api/v1/messages", params={"direction": "out"},
                              headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        listed = await resp.json()
    assert [x["flags"] for x in listed["items"] if x["id"] == mid] == [["business_app"]]


async def test_a_status_after_an_echo_joins_it_and_starts_no_outbound_workflow(stack_factory):
    """Echo, then its statuses while the echo is still being archived: the statuses are stored by
    message id and join it; no OutboundMessage waits for a send record."""
    stack = await stack_factory(run_worker=False)
    mid = wamid()
    assert (await stack.post(dumps(echo_envelope([echo("text", {"body": "see you at 3"}, mid=mid)]))))[0] == 200
    now = int(time.time())
    assert (await stack.post(status_body(mid, "delivered", now)))[0] == 200
    assert (await stack.post(status_body(mid, "read", now + 5)))[0] == 200
    async with running_worker(stack):
        msg = await wait_for_statuses(stack, mid, {"delivered", "read"})
    assert msg["direction"] == "out" and msg["flags"] == ["business_app"] and msg["text"] == "see you at 3"
    assert await outbound_workflows(stack) == []


async def test_a_status_before_its_echo_ends_the_waiting_outbound_workflow(stack):
    """Status first: it starts an OutboundMessage (as for any message not yet known). The echo then
    ends it without a record of its own, so no "no_send_record" row shadows the echo."""
    mid = wamid()
    assert (await stack.post(status_body(mid, "sent", int(time.time()))))[0] == 200
    handle = stack.client.get_workflow_handle(outbound_workflow_id(CONTACT_SECRET, mid))
    deadline = time.monotonic() + 20
    while (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
        assert time.monotonic() < deadline, "the status started no OutboundMessage"
        await asyncio.sleep(0.1)
    assert (await stack.post(dumps(echo_envelope([echo("text", {"body": "on my way"}, mid=mid)]))))[0] == 200
    assert await closed(handle) == WorkflowExecutionStatus.COMPLETED
    assert (await handle.result())["status"] == "superseded"
    msg = await wait_for_statuses(stack, mid, {"sent"})
    assert msg["flags"] == ["business_app"] and msg["text"] == "on my way" and msg["direction"] == "out"
    assert await queries.list_failures(stack.pool) == []


async def test_invalid_echoes_are_kept_raw_and_answered_200(stack):
    good = wamid()
    no_id = echo("text", {"body": "no id"})
    del no_id["id"]
    long_id = echo("text", {"body": "long id"}, mid="wamid." + "A" * 300)
    body = echo_envelope([no_id, "not an object", {"id": 42, "type": "text"}, long_id,
                          echo("text", {"body": "fine"}, mid=good)])
    status, answer = await stack.post(dumps(body))
    assert status == 200
    msg = await stack.wait_for_message(good)
    assert msg["text"] == "fine"
    rows = await stack.pool.fetch("SELECT position, kind, payload FROM webhook_events WHERE delivery_sha256 = $1"
                                  " ORDER BY position", answer["delivery"])
    assert [(r["position"], r["kind"]) for r in rows] == [(i, "invalid_echo") for i in range(4)]
    assert rows[0]["payload"] == {"item": no_id}
    not_a_list = echo_envelope([])
    not_a_list["entry"][0]["changes"][0]["value"]["message_echoes"] = {"id": "x"}
    status, answer = await stack.post(dumps(not_a_list))
    assert status == 200
    assert await stack.pool.fetchval("SELECT kind FROM webhook_events WHERE delivery_sha256 = $1",
                                     answer["delivery"]) == "invalid_echoes"


async def test_a_forged_echo_started_directly_on_temporal_is_refused(stack_factory):
    """An operator copies a pending echo's workflow input and changes what it says (or drops the
    business_app flag so it passes for an API send): refused, named, red; the real one is recorded."""
    stack = await stack_factory(run_worker=False)
    mid = wamid()
    status, answer = await stack.post(dumps(echo_envelope([echo("text", {"body": "pay 40 GBP"}, mid=mid)])))
    assert status == 200
    real = await built_request(stack, answer["delivery"])
    assert real.direction == "out" and real.flags == ["business_app"]
    forged = [real.model_copy(update={"text": "pay 40,000 GBP"}), real.model_copy(update={"flags": []}),
              real.model_copy(update={"direction": "in"})]
    raw = raw_client(stack)
    handles = [await raw.start_workflow("ArchiveMessage", req, id=f"wa-msg-{uuid.uuid4().hex}",
                                        task_queue=stack.settings.task_queue) for req in forged]
    async with running_worker(stack):
        for handle in handles:
            assert await closed(handle) == WorkflowExecutionStatus.FAILED
        msg = await stack.wait_for_message(mid)
    assert msg["text"] == "pay 40 GBP" and msg["flags"] == ["business_app"] and msg["direction"] == "out"
    failures = [f for f in await queries.list_failures(stack.pool) if f["message_id"] == mid]
    assert sorted(f["last_error"].rsplit(" in: ", 1)[1] for f in failures) == ["direction", "flags", "text"]
    assert all(f["last_error_type"] == "UnverifiedMessage" for f in failures)
