"""What Temporal may see and what the archive may take from it.

Temporal stores workflow ids and search attributes unencrypted, and anyone who can start a workflow
on the cluster can hand the worker an input. So ids that reach Temporal carry no phone number (Meta's
message ids are base64 of data holding the customer's number: Temporal holds a keyed hash instead),
and a message is recorded only when it is what the archive itself stored: a delivery its webhook
checked the signature of, or a send record its API stored. Anything else is refused and kept as a
failure, never as a record.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from wa_archive.db import queries
from wa_archive.integrity import sequencing
from wa_archive.models import ArchiveRequest, Contact
from wa_archive.sources.meta.samples import BUSINESS, dumps, envelope, message
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


# 2. Only what the archive stored is recorded ----------------------------------------------------


def forged_request(message_id: str, delivery_sha256: str, text: str) -> ArchiveRequest:
    """An invented, backdated message from a phone the business never talked to."""
    return ArchiveRequest(
        message_id=message_id, delivery_sha256=delivery_sha256, type="text",
        timestamp=datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc), raw_timestamp="1709285400",
        phone_number_id=BUSINESS["phone_number_id"], display_phone_number=BUSINESS["display_phone_number"],
        contact=Contact(phone="447700900777", wa_id="447700900777", name="Forged Customer"), text=text,
        payload={"from": "447700900777", "id": message_id, "type": "text", "text": {"body": text}})


async def a_delivery_seen_in_temporal(stack) -> str:
    """A real delivery's sha256, as any Temporal operator reads it from IngestDelivery's workflow id."""
    status, _ = await stack.post(dumps(envelope([message("text", {"body": "an ordinary message"})])))
    assert status == 200
    wf = await only_workflow(stack, "IngestDelivery")
    return wf.id.removeprefix("wa-delivery-")


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
    await sequencing.integrate(stack.pool)  # what the integrator's Schedule does within a second
    return await stack.pool.fetchval(
        "SELECT count(*) FROM ledger_leaves WHERE kind = 'message' AND record_id = $1", message_id)


async def test_an_unencrypted_workflow_input_from_a_temporal_operator_becomes_an_archived_message(stack_factory):
    """Guarded: a plaintext ArchiveMessage input started by anyone with access to the cluster (no
    payload key, no archive token), tied to a real delivery whose hash is read off a workflow id, is
    refused: no record, no ledger leaf for it, a critical failure naming why, a red workflow."""
    stack = await stack_factory(inline_fanout_max=0)
    delivery = await a_delivery_seen_in_temporal(stack)
    forged_id = f"wamid.FORGED-{uuid.uuid4().hex}"
    text = "I authorise the transfer of EUR 1,000,000 to account DE00 0000 0000 0000 0000 00"
    handle = await raw_client(stack).start_workflow(
        "ArchiveMessage", forged_request(forged_id, delivery, text), id=f"wa-msg-{uuid.uuid4().hex}",
        task_queue=stack.settings.task_queue)
    status = await closed(handle)
    forged = await queries.get_message(stack.pool, forged_id)
    assert forged is None, f"a plaintext workflow input was archived as evidence: {forged['text']!r}"
    assert await ledger_entries(stack, forged_id) == 0
    assert status == WorkflowExecutionStatus.FAILED
    failure = await stack.wait_for_failure(forged_id)
    assert failure["stage"] == "write_records" and failure["last_error_type"] == "UnverifiedMessage"
    assert failure["retry_state"] == "NON_RETRYABLE_FAILURE" and len(failure["attempts"]) == 1
    assert "not in delivery" in failure["last_error"]


async def test_a_real_message_handed_over_with_other_content_is_refused(stack_factory):
    """Guarded: an operator copies a pending message's request (its id, its delivery, its raw item)
    and changes what it says, or where it claims to come from, before the real run writes it. Each
    copy is refused (the fields that differ are named, not their values); the real run records the
    message as the signed delivery has it."""
    stack = await stack_factory(run_worker=False)
    message_id = meta_wamid(fresh_phone())
    status, answer = await stack.post(dumps(envelope([message("text", {"body": "transfer 25 GBP"}, mid=message_id)])))
    assert status == 200
    real = await built_request(stack, answer["delivery"])
    changed_text = real.model_copy(update={"text": "transfer 25,000 GBP"})
    changed_item = real.model_copy(update={"payload": {**real.payload, "text": {"body": "transfer 25,000 GBP"}},
                                           "text": "transfer 25,000 GBP"})
    backdated = real.model_copy(update={"timestamp": datetime(2024, 3, 1, tzinfo=timezone.utc)})
    other_customer = real.model_copy(update={"contact": Contact(phone="447700900777", wa_id="447700900777")})
    raw = raw_client(stack)
    forged = [await raw.start_workflow("ArchiveMessage", req, id=f"wa-msg-{uuid.uuid4().hex}",
                                       task_queue=stack.settings.task_queue)
              for req in (changed_text, changed_item, backdated, other_customer)]
    async with running_worker(stack):
        for handle in forged:
            assert await closed(handle) == WorkflowExecutionStatus.FAILED
        msg = await stack.wait_for_message(message_id)
    assert msg["text"] == "transfer 25 GBP" and msg["payload"] == real.payload
    assert msg["timestamp"] == real.timestamp.isoformat() and msg["contact"]["phone"] == real.contact.phone
    assert await ledger_entries(stack, message_id) == 1
    failures = [f for f in await queries.list_failures(stack.pool) if f["message_id"] == message_id]
    assert sorted(f["last_error"].rsplit(" in: ", 1)[1] for f in failures) == ["contact", "payload, text", "text",
                                                                              "timestamp"]
    assert all(f["stage"] == "write_records" and f["last_error_type"] == "UnverifiedMessage" for f in failures)
    assert not any("447700900777" in f["last_error"] or "25,000" in f["last_error"] for f in failures)


async def test_a_message_no_longer_linked_to_its_delivery_is_not_recorded(stack_factory):
    """Guarded: disposition and erasure remove a message's links to its deliveries (and the
    delivery itself once nothing links to it). A request for it, started again with the exact
    content of a delivery still stored, is refused rather than bringing the message back."""
    stack = await stack_factory(run_worker=False)
    message_id = meta_wamid(fresh_phone())
    status, answer = await stack.post(dumps(envelope([message("text", {"body": "gone"}, mid=message_id),
                                                      message("text", {"body": "kept"})])))
    assert status == 200
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("DELETE FROM message_deliveries WHERE message_id = $1", message_id)
    async with running_worker(stack):
        failure = await stack.wait_for_failure(message_id)
    assert failure["last_error_type"] == "UnverifiedMessage" and "not linked" in failure["last_error"]
    assert await queries.get_message(stack.pool, message_id) is None


async def test_a_forged_wasender_message_is_refused(stack_factory):
    """The same rule for WASender deliveries (which carry a shared secret, not a signature)."""
    from tests.test_wasender import SECRET, key_id, post, upsert

    stack = await stack_factory(wasender_webhook_secret=SECRET, run_worker=False)
    item = {"key": {"id": key_id(), "fromMe": False, "remoteJid": "447700900123@s.whatsapp.net",
                    "cleanedSenderPn": "447700900123"},
            "messageBody": "see you at 3", "message": {"conversation": "see you at 3"}, "messageTimestamp": 1792496014}
    status, answer = await post(stack, upsert(item))
    assert status == 200
    real = await built_request(stack, answer["delivery"])
    assert real.source == "wasender"
    invented = real.model_copy(update={"message_id": key_id(), "payload": {**item, "key": {**item["key"]}}})
    handle = await raw_client(stack).start_workflow("ArchiveMessage", invented, id=f"wa-msg-{uuid.uuid4().hex}",
                                                    task_queue=stack.settings.task_queue)
    async with running_worker(stack):
        assert await closed(handle) == WorkflowExecutionStatus.FAILED
        await stack.wait_for_message(real.message_id)
    assert await queries.get_message(stack.pool, invented.message_id) is None
    failure = await stack.wait_for_failure(invented.message_id)
    assert "not in delivery" in failure["last_error"]


async def test_an_input_sealed_through_the_codec_server_is_refused_too(stack_factory):
    """An admin with Temporal access can seal any input under the archive's key through POST
    /codec/encode (the UI's write actions use it), so a sealed input is no proof of where it came
    from: it is checked like any other, and refused."""
    import dataclasses

    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payloads
    from temporalio.converter import PayloadCodec

    from tests.test_codec_server import body, call
    from wa_archive.temporal.codec import ENCODING

    class RemoteEncode(PayloadCodec):
        """What `temporal --codec-endpoint` does: seal through the archive's codec server."""

        def __init__(self, token: str) -> None:
            self.token = token

        async def encode(self, payloads):
            status, _, text = await call(stack, "/codec/encode", body(list(payloads)),
                                         {"Authorization": f"Bearer {self.token}"})
            assert status == 200, text
            return list(json_format.Parse(text, Payloads()).payloads)

        async def decode(self, payloads):
            return list(payloads)

    stack = await stack_factory(inline_fanout_max=0)
    delivery = await a_delivery_seen_in_temporal(stack)
    token = await stack.token("admin", name="admin-minter")
    minting = Client(**{**stack.client.config(), "data_converter": dataclasses.replace(
        pydantic_data_converter, payload_codec=RemoteEncode(token))})
    forged_id = f"wamid.MINTED-{uuid.uuid4().hex}"
    handle = await minting.start_workflow(
        "ArchiveMessage", forged_request(forged_id, delivery, "minted through /codec/encode"),
        id=f"wa-msg-{uuid.uuid4().hex}", task_queue=stack.settings.task_queue)
    history = await raw_client(stack).get_workflow_handle(handle.id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert started.metadata["encoding"] == ENCODING  # sealed: indistinguishable from the archive's own
    assert await closed(handle) == WorkflowExecutionStatus.FAILED
    assert await queries.get_message(stack.pool, forged_id) is None
    assert (await stack.wait_for_failure(forged_id))["last_error_type"] == "UnverifiedMessage"


# Outbound: only what the send proxy or record API stored -----------------------------------------


async def test_an_outbound_message_without_a_stored_send_is_refused(stack):
    """Guarded: an operator signals-with-start an OutboundMessage with an invented send (and a `sent`
    status to hurry it): no send record was stored, so nothing is recorded."""
    from wa_archive.models import OutboundSend, OutboundStart, StatusSignal
    from wa_archive.names import SIGNAL_SEND, SIGNAL_STATUS

    forged_id = meta_wamid("447700900777")
    send = OutboundSend(message_id=forged_id, phone_number_id=BUSINESS["phone_number_id"], via="record",
                        recorded_at=datetime(2024, 3, 1, tzinfo=timezone.utc),
                        request={"messaging_product": "whatsapp", "to": "447700900777", "type": "text",
                                 "text": {"body": "we guarantee a 40% return"}},
                        response={"messages": [{"id": forged_id}]})
    raw = raw_client(stack)
    handle = await raw.start_workflow("OutboundMessage", OutboundStart(message_id=forged_id),
                                      id=f"wa-out-{uuid.uuid4().hex}", task_queue=stack.settings.task_queue,
                                      start_signal=SIGNAL_SEND, start_signal_args=[send])
    await handle.signal(SIGNAL_STATUS, StatusSignal(status="sent", timestamp=datetime(2024, 3, 1, tzinfo=timezone.utc)))
    assert await closed(handle) == WorkflowExecutionStatus.FAILED
    assert await queries.get_message(stack.pool, forged_id) is None
    failure = await stack.wait_for_failure(forged_id)
    assert failure["stage"] == "write_outbound" and failure["last_error_type"] == "UnverifiedMessage"
    # The run looks for the send the archive stored, finds none, and has no stored status to keep either.
    assert "no status of this message was received" in failure["last_error"]


async def test_a_stored_send_handed_over_with_other_content_or_time_changes_nothing(stack):
    """Guarded: a real send's request, or its time, changed on its way through Temporal: such runs take
    nothing from their signals (they wait for a stored status, and would record the send as stored),
    the message is recorded once, as stored, at the stored status's time; and a `no_send_record` entry invented
    for a message no status webhook ever named is refused."""
    from tests.test_outbound import PNID, _record, status_body
    from wa_archive.models import OutboundOptions, OutboundSend, OutboundStart, StatusSignal
    from wa_archive.names import SIGNAL_SEND, SIGNAL_STATUS

    token = await stack.token("sender")
    message_id = meta_wamid(fresh_phone())
    request = {"messaging_product": "whatsapp", "to": "447700900123", "type": "text",
               "text": {"body": "your balance is 120 GBP"}}
    response = {"messaging_product": "whatsapp", "contacts": [{"input": "447700900123", "wa_id": "447700900123"}],
                "messages": [{"id": message_id}]}
    assert (await _record(stack, token, {"phone_number_id": PNID, "request": request, "response": response}))[0] == 200
    recorded = await stack.pool.fetchval("SELECT recorded_at FROM outbound_sends WHERE message_id = $1", message_id)
    other_text = OutboundSend(message_id=message_id, phone_number_id=PNID, via="record", recorded_at=recorded,
                              request={**request, "text": {"body": "your balance is 120,000 GBP"}}, response=response)
    backdated = other_text.model_copy(update={"request": request})
    raw = raw_client(stack)
    handles = []
    for send, when in ((other_text, None), (backdated, datetime(2024, 3, 1, tzinfo=timezone.utc))):
        handle = await raw.start_workflow("OutboundMessage", OutboundStart(message_id=message_id),
                                          id=f"wa-out-{uuid.uuid4().hex}", task_queue=stack.settings.task_queue,
                                          start_signal=SIGNAL_SEND, start_signal_args=[send])
        await handle.signal(SIGNAL_STATUS, StatusSignal(status="sent", timestamp=when or recorded))
        handles.append(handle)
    nobody = meta_wamid(fresh_phone())
    handles.append(await raw.start_workflow(
        "OutboundMessage", OutboundStart(message_id=nobody, options=OutboundOptions(record_wait_seconds=0.5)),
        id=f"wa-out-{uuid.uuid4().hex}", task_queue=stack.settings.task_queue, start_signal=SIGNAL_STATUS,
        start_signal_args=[StatusSignal(status="delivered", timestamp=datetime(2024, 3, 1, tzinfo=timezone.utc))]))
    assert await closed(handles[-1]) == WorkflowExecutionStatus.FAILED
    assert "no status" in (await stack.wait_for_failure(nobody))["last_error"]
    assert await queries.get_message(stack.pool, nobody) is None

    real_sent = int(time.time())
    await stack.post(status_body(message_id, "sent", real_sent))
    msg = await stack.wait_for_message(message_id)
    for handle in handles[:-1]:  # still waiting for a stored `sent` of their own: nothing false recorded
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate("test over")
    assert msg["text"] == "your balance is 120 GBP" and msg["payload"]["request"] == request
    assert msg["timestamp"] == datetime.fromtimestamp(real_sent, timezone.utc).isoformat()
    assert [f for f in await queries.list_failures(stack.pool) if f["message_id"] == message_id] == []
    assert await ledger_entries(stack, message_id) == 1


async def test_a_send_the_proxy_stored_but_could_not_hand_over_is_recorded_through_the_record_api(stack):
    """When the proxy stored a send but could not hand it to Temporal, its 503 tells the caller to post
    the exchange to the record API. The send stored first (the proxy's, exactly as it went to Meta) is
    what the workflow gets, so the record follows from it and is not refused."""
    from tests.test_outbound import PNID, _record, status_body

    message_id = meta_wamid(fresh_phone())
    request = {"messaging_product": "whatsapp", "to": "447700900123", "type": "text", "text": {"body": "hi"}}
    response = {"messaging_product": "whatsapp", "contacts": [{"input": "447700900123", "wa_id": "447700900123"}],
                "messages": [{"id": message_id}]}
    await queries.record_outbound_send(stack.pool, message_id=message_id, phone_number_id=PNID, via="proxy",
                                       request=request, response=response, http_status=200, accepted=True,
                                       token_name="a-sender")  # then Temporal failed: 503
    token = await stack.token("sender")
    as_posted = {**request, "recipient_type": "individual"}  # the caller's copy, serialised its own way
    status, _ = await _record(stack, token, {"phone_number_id": PNID, "request": as_posted, "response": response})
    assert status == 200
    await stack.post(status_body(message_id, "sent", int(time.time())))
    msg = await stack.wait_for_message(message_id)
    assert msg["payload"] == {"request": request, "response": response, "via": "proxy"}
    assert [f for f in await queries.list_failures(stack.pool) if f["message_id"] == message_id] == []


# The cache of parsed deliveries --------------------------------------------------------------------


async def test_a_delivery_is_parsed_once_for_all_its_messages_and_the_cache_is_bounded():
    from wa_archive.archive.provenance import DeliveryCache, StoredDelivery

    loads: list[str] = []

    async def load(sha: str) -> StoredDelivery | None:
        loads.append(sha)
        await asyncio.sleep(0.01)
        if sha == "missing":
            return None
        items = [message("text", {"body": f"m{i}"}, mid=f"wamid.{sha}.{i}") for i in range(1000)]
        return StoredDelivery(sha256=sha, source="meta", body=dumps(envelope(items)),
                              received_at=datetime.now(timezone.utc))

    cache = DeliveryCache(load, max_entries=3)
    got = await asyncio.gather(*(cache.get("big") for _ in range(200)))
    assert cache.parsed == 1 and loads == ["big"] and all(g is got[0] for g in got)
    assert len(got[0].by_id) == 1000 and got[0].by_id["wamid.big.7"][0]["text"] == "m7"
    assert await cache.get("missing") is None and await cache.get("missing") is None
    assert loads.count("missing") == 2  # an unknown delivery is never cached
    for sha in ("a", "b", "big", "c"):  # "big" is used again, so "a" is the least recently used
        await cache.get(sha)
    assert len(cache) == 3 and cache.parsed == 4
    await cache.get("big")
    await cache.get("a")
    assert cache.parsed == 5  # "a" was evicted and parsed again; "big" stayed
    small = DeliveryCache(load, max_bytes=1)
    await small.get("x")
    await small.get("y")
    assert len(small) == 1  # over the byte budget: only the newest is kept


# Helpers ------------------------------------------------------------------------------------------


async def built_request(stack, delivery_sha256: str) -> ArchiveRequest:
    """The one message of a stored delivery, as the webhook built its workflow input."""
    from wa_archive.json_input import load_json
    from wa_archive.sources.meta.payload import parse_delivery
    from wa_archive.sources.wasender.payload import parse_wasender

    stored = await queries.get_delivery(stack.pool, delivery_sha256)
    parse = parse_wasender if stored["source"] == "wasender" else parse_delivery
    [request] = parse(load_json(stored["body"], substitute=True), stored["sha256"], stored["received_at"]).messages
    return request.model_copy(update={"options": stack.settings.archive_options()})


@contextlib.asynccontextmanager
async def running_worker(stack):
    """A worker for a stack built without one, so that workflows can be lined up before it runs."""
    from worker import build_worker, link_fetcher

    links = link_fetcher(stack.settings)
    try:
        async with build_worker(stack.client, stack.settings, stack.pool, stack.store, stack.http, links):
            yield
    finally:
        await links.close()


async def test_a_message_whose_workflow_runs_under_its_old_id_is_recorded_once(stack_factory):
    """Upgrade: a workflow started before this release runs under `wa-msg-<escaped message id>`; a
    redelivery now starts a second one under the hashed id. Both run to completion and the message is
    recorded once: one row, one media row, one stored object, one ledger entry, no failure."""
    from tests.conftest import CONTACT_SECRET
    from wa_archive.archive.keys import message_workflow_id, safe_id
    from wa_archive.sources.meta.fake_graph import FakeMedia
    from wa_archive.sources.meta.samples import media_message

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
    legacy = await stack.client.start_workflow("ArchiveMessage", await built_request(stack, answer["delivery"]),
                                               id=f"wa-msg-{safe_id(message_id)}", task_queue=stack.settings.task_queue)
    current = stack.client.get_workflow_handle(message_workflow_id(CONTACT_SECRET, message_id))
    async with running_worker(stack):
        assert await closed(legacy) == WorkflowExecutionStatus.COMPLETED
        assert await closed(current) == WorkflowExecutionStatus.COMPLETED
    msg = await queries.get_message(stack.pool, message_id)
    assert msg["archive_status"] == "archived" and msg["contact"]["phone"] == phone
    [row] = msg["media"]
    assert row["status"] == "archived" and await stack.read_object(row["storage_key"]) == content
    assert len(await stack.stored_objects()) == 1
    assert await ledger_entries(stack, message_id) == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM archive_failures WHERE message_id = $1", message_id) == 0


async def test_a_record_without_its_send_is_refused_while_the_send_is_stored(stack):
    """A statuses-only record ("no_send_record", no content) would hide a send the archive stored: the
    worker refuses it, whichever run asks, so the message is recorded only from its send."""
    from tests.test_outbound import PNID, status_body
    from wa_archive.archive.provenance import DeliveryCache, check_outbound, stored_delivery_loader
    from wa_archive.errors import UnverifiedMessage
    from wa_archive.models import WriteOutboundInput

    message_id = meta_wamid(fresh_phone())
    request = {"messaging_product": "whatsapp", "to": "447700900123", "type": "text", "text": {"body": "hi"}}
    response = {"messaging_product": "whatsapp", "contacts": [{"input": "447700900123", "wa_id": "447700900123"}],
                "messages": [{"id": message_id}]}
    sent_at = int(time.time())
    assert (await stack.post(status_body(message_id, "sent", sent_at)))[0] == 200
    bare = WriteOutboundInput(message_id=message_id, timestamp=datetime.fromtimestamp(sent_at, timezone.utc),
                              type="unknown", flags=["no_send_record"])
    cache = DeliveryCache(stored_delivery_loader(stack.pool))
    await check_outbound(stack.pool, cache, bare, None)  # no send stored: the statuses may stand alone
    await queries.record_outbound_send(stack.pool, message_id=message_id, phone_number_id=PNID, via="proxy",
                                       request=request, response=response, http_status=200, accepted=True,
                                       token_name="a-sender")
    try:
        await check_outbound(stack.pool, cache, bare, None)
    except UnverifiedMessage as err:
        assert "send of this message is stored" in str(err)
    else:
        raise AssertionError("a record without its stored send was accepted")
