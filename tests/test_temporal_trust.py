"""What Temporal may see and what the archive may take from it.

Temporal stores workflow ids and search attributes unencrypted. So ids that reach Temporal carry no
phone number (Meta's message ids are base64 of data holding the customer's number: Temporal holds a
keyed hash instead).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from wa_archive.db import queries
from wa_archive.sources.meta.samples import dumps, envelope, message
from wa_archive.temporal.codec import WORKFLOW_ID_METADATA


def raw_client(stack) -> Client:
    """A Temporal client as a Temporal operator has one: no payload key, no codec."""
    return Client(**{**stack.client.config(), "data_converter": pydantic_data_converter})


def meta_wamid(phone: str) -> str:
    """A message id shaped like Meta's (its documented `wamid.HBgLMTY1MDUxMjM0NTYV…` decodes to
    `…16505123456…`): base64 of a protobuf-like blob holding the counterpart's number."""
    raw = (b"\x1c\x18" + bytes([len(phone)]) + phone.encode() + b"\x15\x02\x00\x11\x18\x12"
           + os.urandom(9).hex().upper().encode() + b"\x00")
    return "wamid." + base64.b64encode(raw).decode()


def _unescape(value: str) -> str:
    return re.sub(r"~([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def readable_phone(value: str, phone: str) -> bool:
    """True when `phone` can be read out of a value without any key (plain, or inside a base64 wamid)."""
    value = _unescape(value)
    if phone in value:
        return True
    for token in re.findall(r"wamid\.([A-Za-z0-9+/=]+)", value):
        if phone.encode() in base64.b64decode(token + "=" * (-len(token) % 4)):
            return True
    return False


def fresh_phone() -> str:
    return "447700900" + str(uuid.uuid4().int % 1000).zfill(3)


async def only_workflow(stack, workflow_type: str, timeout: float = 20):
    """The one workflow of a type on this test's task queue, as any Temporal operator lists it."""
    raw = raw_client(stack)
    deadline = time.monotonic() + timeout
    query = f"TaskQueue = '{stack.settings.task_queue}' AND WorkflowType = '{workflow_type}'"
    while time.monotonic() < deadline:
        found = [wf async for wf in raw.list_workflows(query)]
        if found:
            assert len(found) == 1, [wf.id for wf in found]
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {workflow_type} workflow listed")


async def exposed(stack, workflow_type: str) -> dict[str, str]:
    """Everything about a workflow that Temporal holds in clear: its id, its message id search
    attribute, and the workflow label on its input."""
    from wa_archive.names import MESSAGE_ID

    wf = await only_workflow(stack, workflow_type)
    handle = raw_client(stack).get_workflow_handle(wf.id)
    described = await handle.describe()
    history = await handle.fetch_history()
    payload = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    return {"workflow id": wf.id, "search attribute WhatsAppMessageId": described.typed_search_attributes.get(MESSAGE_ID),
            "payload label": payload.metadata[WORKFLOW_ID_METADATA].decode()}


# 1. No phone number in what Temporal holds in clear ---------------------------------------------


async def test_search_attributes_and_workflow_ids_carry_no_phone_number(stack):
    """A Meta message id holds the customer's number; its workflow id, search attribute and the
    payload label hold a keyed hash, from which whoever holds the key finds the workflow."""
    phone = fresh_phone()
    message_id = meta_wamid(phone)
    assert readable_phone(message_id, phone)  # the premise: a wamid gives the number away
    status, _ = await stack.post(dumps(envelope([message("text", {"body": "hello"}, mid=message_id, phone=phone)],
                                                phone=phone)))
    assert status == 200
    await stack.wait_for_message(message_id)
    visible = await exposed(stack, "ArchiveMessage")
    leaking = [what for what, value in visible.items() if value and readable_phone(value, phone)]
    assert leaking == [], f"the phone number {phone} is readable without a key from: {leaking}"
    assert not any(message_id in value for value in visible.values() if value)

    from tests.conftest import CONTACT_SECRET
    from wa_archive.archive.keys import message_key, message_workflow_id

    assert visible["workflow id"] == message_workflow_id(CONTACT_SECRET, message_id)
    assert visible["search attribute WhatsAppMessageId"] == message_key(CONTACT_SECRET, message_id)
    # The CLI gives whoever holds the key the search attribute and the workflow ids.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env["WA_ARCHIVE_CONTACT_KEY_SECRET"] = CONTACT_SECRET
    cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", "message-key", message_id,
                                                   "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    looked_up = json.loads(cli.stdout)
    assert looked_up["inbound_workflow_id"] == visible["workflow id"]
    found = [wf async for wf in stack.client.list_workflows(f"WhatsAppMessageId = '{looked_up['message_key']}'")]
    assert [wf.id for wf in found] == [visible["workflow id"]]


async def test_an_outbound_message_workflow_carries_no_phone_number(stack):
    """The wamid Meta returns for a send holds the recipient's number just the same."""
    from tests.test_outbound import PNID, _record, status_body

    phone = fresh_phone()
    message_id = meta_wamid(phone)
    token = await stack.token("sender")
    status, _ = await _record(stack, token, {
        "phone_number_id": PNID, "request": {"messaging_product": "whatsapp", "to": phone, "type": "text",
                                             "text": {"body": "your statement is ready"}},
        "response": {"messaging_product": "whatsapp", "contacts": [{"input": phone, "wa_id": phone}],
                     "messages": [{"id": message_id}]}})
    assert status == 200
    await stack.post(status_body(message_id, "sent", int(time.time())))
    await stack.wait_for_message(message_id)
    visible = await exposed(stack, "OutboundMessage")
    leaking = [what for what, value in visible.items() if value and readable_phone(value, phone)]
    assert leaking == [], f"the phone number {phone} is readable without a key from: {leaking}"

    from tests.conftest import CONTACT_SECRET
    from wa_archive.archive.keys import outbound_workflow_id

    assert visible["workflow id"] == outbound_workflow_id(CONTACT_SECRET, message_id)


# Upgrades -----------------------------------------------------------------------------------


async def closed(handle, timeout: float = 30) -> WorkflowExecutionStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (await handle.describe()).status
        if status != WorkflowExecutionStatus.RUNNING:
            return status
        await asyncio.sleep(0.2)
    await handle.terminate("test cleanup")
    raise AssertionError(f"{handle.id} still running after {timeout}s")


async def ledger_entries(stack, message_id: str) -> int:
    return await stack.pool.fetchval(
        "SELECT count(*) FROM ledger_leaves WHERE kind = 'message' AND record_id = $1", message_id)


async def test_a_message_whose_workflow_runs_under_its_old_id_is_recorded_once(stack_factory):
    """Upgrade: a workflow started before this release runs under `wa-msg-<escaped message id>`; a
    redelivery now starts a second one under the hashed id. Both run to completion and the message is
    recorded once: one row, one media row, one stored object, one ledger entry, no failure."""
    from tests.conftest import CONTACT_SECRET
    from wa_archive.archive.keys import message_workflow_id, safe_id
    from wa_archive.json_input import load_json
    from wa_archive.sources.meta.fake_graph import FakeMedia
    from wa_archive.sources.meta.payload import parse_delivery
    from wa_archive.sources.meta.samples import media_message
    from worker import build_worker, link_fetcher

    stack = await stack_factory(run_worker=False)
    content = os.urandom(5000)
    media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().int % 10**15}", content=content))
    phone = fresh_phone()
    message_id = meta_wamid(phone)
    status, answer = await stack.post(dumps(envelope(
        [media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=message_id, phone=phone)],
        phone=phone)))
    assert status == 200
    # The run the previous release started for the same message, with the request it built.
    stored = await queries.get_delivery(stack.pool, answer["delivery"])
    [request] = parse_delivery(load_json(stored["body"], substitute=True), stored["sha256"],
                               stored["received_at"]).messages
    request = request.model_copy(update={"options": stack.settings.archive_options()})
    legacy = await stack.client.start_workflow("ArchiveMessage", request, id=f"wa-msg-{safe_id(message_id)}",
                                               task_queue=stack.settings.task_queue)
    current = stack.client.get_workflow_handle(message_workflow_id(CONTACT_SECRET, message_id))
    links = link_fetcher(stack.settings)
    try:
        async with build_worker(stack.client, stack.settings, stack.pool, stack.store, stack.http, links):
            assert await closed(legacy) == WorkflowExecutionStatus.COMPLETED
            assert await closed(current) == WorkflowExecutionStatus.COMPLETED
    finally:
        await links.close()
    msg = await queries.get_message(stack.pool, message_id)
    assert msg["archive_status"] == "archived" and msg["contact"]["phone"] == phone
    [row] = msg["media"]
    assert row["status"] == "archived" and await stack.read_object(row["storage_key"]) == content
    assert len(await stack.stored_objects()) == 1
    assert await ledger_entries(stack, message_id) == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM archive_failures WHERE message_id = $1", message_id) == 0
