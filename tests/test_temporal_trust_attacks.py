"""Red-team attacks on "Temporal is never a source of messages".

The attacker is anyone who can start workflows or send signals on the archive's Temporal namespace
(no payload key, no archive token), or at most an admin who can seal payloads through
/codec/encode and read a decoded history. Each test says what the attacker does and what the
archive must (still) do. A test that fails here demonstrates a hole; see each docstring.

Tests that need more than starting workflows and sending signals say so: running a worker on a
task queue of one's own is the same Temporal permission (namespace write) as starting workflows.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import RetryPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.conftest import wait_until
from tests.test_temporal_trust import (
    built_request,
    closed,
    fresh_phone,
    meta_wamid,
    only_workflow,
    raw_client,
)
from wa_archive.db import queries
from wa_archive.models import IngestDeliveryInput, MediaRecord, StatusSignal, WriteRecordsInput
from wa_archive.names import SIGNAL_STATUS, WRITE_RECORDS
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import WABA_ID, dumps, envelope, media_message, message

OTHER_WABA = "998877665544332"


async def delete_execution(stack, workflow_id: str) -> None:
    """What Temporal's namespace retention does to every closed history after 30 days (and what an
    operator may do at any time): the closed execution is gone, so its id can be used again."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

    client = raw_client(stack)
    await client.workflow_service.delete_workflow_execution(DeleteWorkflowExecutionRequest(
        namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id)))

    seen: list[str] = []

    async def gone() -> bool:
        try:
            d = await client.get_workflow_handle(workflow_id).describe()
            seen.append(f"{d.status} {d.run_id}")
        except RPCError as err:
            seen.append(f"{err.status} {err.message}")
            return err.status == RPCStatusCode.NOT_FOUND
        return False

    await wait_until(gone, f"{workflow_id} deleted (last seen: {seen[-3:]})", timeout=60, interval=1)


# 1. IngestDelivery restarted by an operator ---------------------------------------------------------


@pytest.mark.slow
async def test_a_disposed_message_is_never_linked_started_or_written_again(stack_factory):
    """Guarded. A large delivery's hash is in clear in its IngestDelivery workflow id. One of its two
    messages is disposed of (retention over, or an erasure request); the delivery stays because
    the other message is still retained. An operator starts IngestDelivery again for that hash
    (any workflow id), once Temporal's 30-day history retention has deleted the old ArchiveMessage
    run (always true by the time a message's retention ends). The disposition record stops it
    everywhere: the fan-out neither links nor starts the disposed message, a webhook redelivery
    of the body does neither, its statuses are not recorded again, and an ArchiveMessage started
    for it directly, or write_message itself, refuses it (UnverifiedMessage), writing no failure
    or attempt row under its id."""
    from tests.conftest import CONTACT_SECRET
    from tests.test_retention import _dispose
    from wa_archive.archive import writes
    from wa_archive.archive.fanout import record_delivery
    from wa_archive.archive.keys import message_workflow_id
    from wa_archive.devstack.runtime import retention_rules
    from wa_archive.errors import UnverifiedMessage
    from wa_archive.json_input import load_json
    from wa_archive.sources.meta.payload import StatusEvent, parse_delivery

    stack = await stack_factory(inline_fanout_max=0)
    phone = fresh_phone()
    gone, kept = meta_wamid(phone), meta_wamid(phone)
    status, _ = await stack.post(dumps(envelope([
        message("text", {"body": "please erase everything about me"}, mid=gone, phone=phone),
        message("text", {"body": "a message still retained"}, mid=kept, phone=phone)], phone=phone)))
    assert status == 200
    await stack.wait_for_message(gone)
    await stack.wait_for_message(kept)
    sha = (await only_workflow(stack, "IngestDelivery")).id.removeprefix("wa-delivery-")

    # The retention of `gone` ends (set back as the clock would) and it is disposed of.
    async with stack.admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE messages SET retain_until = now() - interval '1 day' WHERE id = $1", gone)
    assert (await _dispose(stack)).removed == 1
    assert await queries.get_message(stack.pool, gone) is None
    stored = await queries.get_delivery(stack.pool, sha)
    assert stored is not None  # kept for the other message
    wf_id = message_workflow_id(CONTACT_SECRET, gone)
    await delete_execution(stack, wf_id)  # Temporal's retention

    # The attack: a plaintext start of IngestDelivery naming the stored delivery.
    handle = await raw_client(stack).start_workflow(
        "IngestDelivery", IngestDeliveryInput(delivery_sha256=sha), id=f"replay-{uuid.uuid4().hex}",
        task_queue=stack.settings.task_queue)
    assert await closed(handle) == WorkflowExecutionStatus.COMPLETED
    try:  # the fan-out has finished: had it started the message, its run would be listed
        started = await raw_client(stack).get_workflow_handle(wf_id).describe()
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND
    else:
        raise AssertionError(f"the disposed message's ArchiveMessage was started again ({started.status})")

    # A webhook redelivery of the body (the inline hand-over's statement) and a status of the message.
    skip = await queries.insert_delivery_with_messages(
        stack.pool, sha256=sha, source=stored["source"], body=bytes(stored["body"]), signature=None,
        remote_addr=None, updates=2, received_at=stored["received_at"], message_ids=[gone, kept])
    assert skip == {gone, kept}
    parsed = parse_delivery(load_json(bytes(stored["body"]), substitute=True), sha, stored["received_at"])
    async with stack.pool.acquire() as conn, conn.transaction():
        assert gone in await record_delivery(conn, sha, parsed, consent=stack.settings.consent_feed_options())
        await queries.insert_status_events(conn, sha, [StatusEvent(
            message_id=gone, status="read", timestamp=stored["received_at"], raw_timestamp="1", recipient_id=phone,
            payload={"id": gone, "status": "read"})])

    # ArchiveMessage started for it with its exact request, and write_message called directly.
    [request] = [r for r in parsed.messages if r.message_id == gone]
    direct = await raw_client(stack).start_workflow("ArchiveMessage", request, id=f"x-{uuid.uuid4().hex}",
                                                    task_queue=stack.settings.task_queue)
    assert await closed(direct) == WorkflowExecutionStatus.FAILED
    try:
        await writes.write_message(stack.pool, WriteRecordsInput(request=request), stack.store.url,
                                   retention_rules(stack.settings))
    except UnverifiedMessage as err:
        assert "disposed of" in str(err)
    else:
        raise AssertionError("write_message accepted a disposed message")

    assert await queries.get_message(stack.pool, gone) is None
    for table in ("message_deliveries", "status_events", "archive_failures", "archive_attempts"):
        count = await stack.pool.fetchval(f"SELECT count(*) FROM {table} WHERE message_id = $1", gone)
        assert count == 0, f"{table} holds the disposed message again"
    assert await stack.pool.fetchval("SELECT count(*) FROM ledger_leaves WHERE kind = 'message'"
                                     " AND record_id = $1", gone) == 1  # its first archiving only
    assert (await queries.get_message(stack.pool, kept))["archive_status"] == "archived"


# 2. Status signals to a real OutboundMessage ---------------------------------------------------------


async def test_a_status_signal_naming_another_waba_does_not_choose_the_template_recorded(stack):
    """Guarded (OutboundMessage decides from the stored status webhooks; the worker checks the
    snapshot's WABA). Any operator lists the running OutboundMessage workflows (a template send waits up to
    ten minutes for `sent`) and signals one a `sent` status carrying another WABA's id (no time, so
    the send's own time is used). The workflow snapshots that WABA's template of the same name and
    language, and check_outbound accepts it: it checks that the snapshot exists and renders to the
    text, never that the snapshot is of the sender's WABA, nor the record's waba_id. The archive
    records, as what the customer saw, another template's text ("CANCELLED" for "booked") and a
    waba_id no webhook ever named."""
    from tests.test_outbound import TEMPLATE_V1, _file, _proxy, status_body, template_send

    stack.graph.set_template(WABA_ID, copy.deepcopy(TEMPLATE_V1))
    other = copy.deepcopy(TEMPLATE_V1)
    other["id"] = "9001"
    other["components"][1]["text"] = "Hello {{1}}, your transfer of {{2}} to account ending {{3}} was CANCELLED."
    stack.graph.set_template(OTHER_WABA, other)
    token = await stack.token("sender")
    status, answer = await _proxy(stack, token, template_send({"link": _file(stack, b"\x89PNG " + os.urandom(500))}))
    assert status == 200
    mid = answer["messages"][0]["id"]

    wf = await only_workflow(stack, "OutboundMessage")
    await raw_client(stack).get_workflow_handle(wf.id).signal(
        SIGNAL_STATUS, StatusSignal(status="sent", waba_id=OTHER_WABA))
    await stack.post(status_body(mid, "sent", int(time.time())))  # the real status, with the real WABA
    msg = await stack.wait_for_message(mid)
    waba = await stack.pool.fetchval("SELECT waba_id FROM messages WHERE id = $1", mid)
    assert "Hello Priya, your transfer of 2,500 GBP to account ending 4471 is booked." in msg["rendered_text"], \
        f"the archive records another WABA's template as what the customer saw: {msg['rendered_text']!r}"
    assert "CANCELLED" not in msg["rendered_text"]
    assert waba == WABA_ID


async def test_a_status_signal_for_an_unknown_waba_does_not_strip_the_template_from_the_record(stack):
    """Guarded. The same signal naming a WABA that does not exist: the snapshot fails, the record is
    written with `template_not_snapshotted` and no text, and check_outbound accepts it. The
    template version the customer saw is lost for good (the real status that follows finds the
    message archived), although the send record and a reachable WABA were there."""
    from tests.test_outbound import TEMPLATE_V1, _file, _proxy, status_body, template_send

    stack.graph.set_template(WABA_ID, copy.deepcopy(TEMPLATE_V1))
    token = await stack.token("sender")
    status, answer = await _proxy(stack, token, template_send({"link": _file(stack, b"\x89PNG " + os.urandom(500))}))
    assert status == 200
    mid = answer["messages"][0]["id"]
    wf = await only_workflow(stack, "OutboundMessage")
    await raw_client(stack).get_workflow_handle(wf.id).signal(
        SIGNAL_STATUS, StatusSignal(status="sent", waba_id="000000000000000"))
    await stack.post(status_body(mid, "sent", int(time.time())))
    msg = await stack.wait_for_message(mid)
    assert "template_not_snapshotted" not in msg["flags"], "a signal made the archive drop the template snapshot"
    assert msg["template"]["sha256"] and msg["rendered_text"]


async def test_a_failed_status_signal_does_not_leave_a_real_send_without_its_content(stack_factory):
    """Guarded (the signal is not a stored status, so the run keeps waiting; a run with statuses only is
    refused while a send is stored). An operator signals a running OutboundMessage a `failed` status that no webhook
    carried. The workflow flags `send_failed`, check_outbound refuses that flag, and the run ends
    red. The real `sent` webhook then starts a new run with statuses only (the send is never
    signalled again), and when it gives up waiting for the send, _check_statuses_only accepts a
    content-less `no_send_record` row although an accepted send of the message IS stored. A
    signal thus turns a recorded text send into a record without its text, recipient or request.
    (A `sent` status with a time more than a minute away from the send does the same.)"""
    from tests.test_outbound import _proxy, status_body

    stack = await stack_factory(outbound_record_wait=3.0)
    token = await stack.token("sender")
    text = "Your statement is ready."
    status, answer = await _proxy(stack, token, {"messaging_product": "whatsapp", "to": "+447700900123",
                                                 "type": "text", "text": {"body": text}})
    assert status == 200
    mid = answer["messages"][0]["id"]
    wf = await only_workflow(stack, "OutboundMessage")
    handle = raw_client(stack).get_workflow_handle(wf.id)
    await handle.signal(SIGNAL_STATUS, StatusSignal(status="failed"))
    await stack.post(status_body(mid, "sent", int(time.time())))  # the real status
    msg = await stack.wait_for_message(mid)
    first_run = await closed(handle)
    assert msg["type"] == "text" and msg["rendered_text"] == text, (
        f"after one signal (first run {first_run.name}) the stored send was recorded as {msg['type']!r}"
        f" with flags {msg['flags']} and text {msg['rendered_text']!r}")
    assert first_run == WorkflowExecutionStatus.COMPLETED, "one signal made the archive refuse a real send"


# 3. Media archived before the message is checked -----------------------------------------------------


async def test_a_forged_request_is_refused_before_it_can_store_any_media(stack):
    """Guarded. An admin who has read a message whose media could not be archived yet (the Graph API
    was down: the message is recorded `failed`, to be completed by Meta's redelivery) starts
    ArchiveMessage with a copy of its request naming other media (any media id the archive's token
    can fetch, or a link). Had media been archived before the request was checked, the object
    would sit, write-once and under retention, at the real media's key, and the real bytes would
    meet StorageConflict when the redelivery came. ArchiveMessage checks the request first
    (verify_message): the forged run is refused, a critical failure and a red workflow, with
    nothing fetched or stored, and the redelivery completes the message with the real media."""
    from tests.conftest import CONTACT_SECRET
    from wa_archive.archive.keys import message_workflow_id

    content = os.urandom(4000)
    real_media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().int % 10**15}", content=content, status=500))
    planted = stack.graph.add(FakeMedia(f"m{uuid.uuid4().int % 10**15}", content=b"attacker " + os.urandom(4000)))
    phone = fresh_phone()
    mid = meta_wamid(phone)
    body = dumps(envelope([media_message("image", real_media.media_id, real_media.sha256_b64(), "image/jpeg",
                                         mid=mid, phone=phone)], phone=phone))
    status, answer = await stack.post(body)
    assert status == 200
    run = stack.client.get_workflow_handle(message_workflow_id(CONTACT_SECRET, mid))
    assert await closed(run, timeout=60) == WorkflowExecutionStatus.FAILED
    assert (await queries.get_message(stack.pool, mid))["archive_status"] == "failed"

    real = await built_request(stack, answer["delivery"])
    forged = real.model_copy(update={"media": [real.media[0].model_copy(
        update={"media_id": planted.media_id, "provider_sha256": None})]})
    attack = await raw_client(stack).start_workflow("ArchiveMessage", forged, id=f"x-{uuid.uuid4().hex}",
                                                    task_queue=stack.settings.task_queue)
    assert await closed(attack) == WorkflowExecutionStatus.FAILED
    assert await stack.stored_objects() == [], "a refused request left an object in the archive's store"
    refusals = [f for f in await queries.list_failures(stack.pool)
                if f["message_id"] == mid and f["stage"] == "verify_message"]
    assert len(refusals) == 1 and refusals[0]["last_error_type"] == "UnverifiedMessage"
    assert "differs from the message" in refusals[0]["last_error"]
    assert planted.media_id not in refusals[0]["last_error"]

    real_media.status = None  # the Graph API is back; Meta redelivers
    status, _ = await stack.post(body)
    assert status == 200
    await closed(stack.client.get_workflow_handle(message_workflow_id(CONTACT_SECRET, mid)), timeout=60)
    msg = await queries.get_message(stack.pool, mid)
    failures = {f["last_error_type"] for f in await queries.list_failures(stack.pool) if f["message_id"] == mid}
    assert msg["archive_status"] == "archived", f"the real media was not archived (failures: {sorted(failures)})"
    assert await stack.read_object(msg["media"][0]["storage_key"]) == content
    assert len(await stack.stored_objects()) == 1


# 4. A worker of the attacker's own -----------------------------------------------------------------


@workflow.defn(name="RogueRecordWriter", sandboxed=False)
class RogueRecordWriter:
    """A workflow on the attacker's own task queue that has the archive's worker run write_records
    with an input of its choosing (activities go to whatever task queue the command names)."""

    @workflow.run
    async def run(self, args: dict) -> None:
        await workflow.execute_activity(args.get("activity", WRITE_RECORDS), args["input"],
                                        task_queue=args["task_queue"],
                                        start_to_close_timeout=timedelta(seconds=60),
                                        retry_policy=RetryPolicy(maximum_attempts=1))


async def test_a_rogue_worker_cannot_complete_a_message_with_media_it_chose(stack):
    """Guarded. An admin who read a message recorded `failed` (its media not yet archived) runs a
    workflow on a task queue of their own that schedules write_records on the archive's queue,
    with the message's exact request and a media record `archived` of their choosing: pointing at
    an object they planted (or another message's object) with that object's hash, or at the
    message's own key with a hash and size that no object there has. write_records takes no media
    record on trust: the key must be the one media_object_key gives this message and position,
    and the object under it must be in the store with the record's hash and size, written for
    this message and media id, and match the provider's hash. Each forged record is refused with
    UnverifiedMessage; the message stays `failed` with no new ledger leaf."""
    from tests.conftest import CONTACT_SECRET
    from tests.test_temporal_trust import ledger_entries
    from wa_archive.archive.keys import media_object_key, message_workflow_id

    content = os.urandom(4000)
    real_media = stack.graph.add(FakeMedia(f"m{uuid.uuid4().int % 10**15}", content=content, status=500))
    phone = fresh_phone()
    mid = meta_wamid(phone)
    status, answer = await stack.post(dumps(envelope([media_message(
        "image", real_media.media_id, real_media.sha256_b64(), "image/jpeg", mid=mid, phone=phone)], phone=phone)))
    assert status == 200
    assert await closed(stack.client.get_workflow_handle(message_workflow_id(CONTACT_SECRET, mid)),
                        timeout=60) == WorkflowExecutionStatus.FAILED
    assert (await queries.get_message(stack.pool, mid))["archive_status"] == "failed"
    leaves = await ledger_entries(stack, mid)

    # An object of the attacker's in the store (planted as in the test above, under another message id).
    other = await _archived_image(stack, b"attacker " + os.urandom(3000))
    [other_media] = other["media"]
    real = await built_request(stack, answer["delivery"])
    own_key = media_object_key(mid, real.timestamp, real.contact.path_segment(), "image/jpeg", 0)
    real_hash = hashlib.sha256(content).hexdigest()

    def forged_record(**update) -> WriteRecordsInput:
        record = MediaRecord(
            media_id=real.media[0].media_id, position=0, kind="image", status="archived",
            storage_key=other_media["storage_key"], size=other_media["size"], sha256=other_media["sha256"],
            provider_sha256=real.media[0].provider_sha256, mime_type="image/jpeg",
            declared_mime_type="image/jpeg", stored_at=real.timestamp)
        return WriteRecordsInput(request=real, archive_status="archived", media=[record.model_copy(update=update)])

    attempts = {
        "another message's object": forged_record(provider_sha256=None),
        "another object, the provider's hash claimed": forged_record(sha256=real_hash),
        "its own key, nothing stored there": forged_record(storage_key=own_key, sha256=real_hash, size=len(content)),
    }
    rogue_queue = f"rogue-{uuid.uuid4().hex}"
    raw = raw_client(stack)
    async with Worker(raw, task_queue=rogue_queue, workflows=[RogueRecordWriter],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        handles = {name: await raw.start_workflow(
            "RogueRecordWriter", {"task_queue": stack.settings.task_queue, "input": forged.model_dump(mode="json")},
            id=f"rogue-{uuid.uuid4().hex}", task_queue=rogue_queue) for name, forged in attempts.items()}

        async def refused() -> int:
            rows = await stack.pool.fetchval(
                "SELECT count(*) FROM archive_attempts WHERE message_id = $1 AND stage = 'write_records'"
                " AND error_type = 'UnverifiedMessage'", mid)
            return rows if rows >= len(attempts) else 0

        # The rogue worker cannot read the activity's (encrypted) failure; each refusal is an attempt row.
        await wait_until(refused, "write_records refusing every forged media record", timeout=30)
        for handle in handles.values():
            await handle.terminate("test cleanup")
    msg = await queries.get_message(stack.pool, mid)
    [row] = msg["media"]
    assert msg["archive_status"] == "failed" and row["status"] == "failed" and row["storage_key"] is None, (
        f"a media record of the attacker's choosing was recorded: {row['storage_key']}, sha256 {row['sha256']}")
    assert await ledger_entries(stack, mid) == leaves
    errors = await stack.pool.fetch("SELECT error FROM archive_attempts WHERE message_id = $1"
                                    " AND stage = 'write_records' ORDER BY id", mid)
    assert any("storage_key" in e["error"] for e in errors)
    assert any("names no object" in e["error"] for e in errors)
    assert not any(real_hash in e["error"] or phone in e["error"] for e in errors)


async def test_a_rogue_worker_cannot_file_critical_failures_under_another_run(stack):
    """Guarded in part. A workflow on the attacker's own task queue schedules record_critical_failure
    on the archive's queue naming a real message's workflow and run: refused, since a failure row
    must name the run that reports it. (Rows naming the rogue run itself are still written: see
    SECURITY.md.)"""
    from wa_archive.models import CriticalFailureInput
    from wa_archive.names import RECORD_CRITICAL_FAILURE

    mid = meta_wamid(fresh_phone())
    forged = CriticalFailureInput(message_id=mid, stage="archive_media", workflow_id=f"wa-msg-{uuid.uuid4().hex}",
                                  run_id=str(uuid.uuid4()), last_error_type="MediaHashMismatch",
                                  last_error="the customer's image did not match its hash")
    rogue_queue = f"rogue-{uuid.uuid4().hex}"
    raw = raw_client(stack)
    async with Worker(raw, task_queue=rogue_queue, workflows=[RogueRecordWriter],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        handle = await raw.start_workflow(
            "RogueRecordWriter", {"task_queue": stack.settings.task_queue, "activity": RECORD_CRITICAL_FAILURE,
                                  "input": forged.model_dump(mode="json")},
            id=f"rogue-{uuid.uuid4().hex}", task_queue=rogue_queue)

        async def activity_failed():
            history = await handle.fetch_history()
            return any(e.HasField("activity_task_failed_event_attributes") for e in history.events)

        await wait_until(activity_failed, "the activity failed", timeout=30)
        with contextlib.suppress(RPCError):  # it may have ended on the failure already
            await handle.terminate("test cleanup")
    assert not [f for f in await queries.list_failures(stack.pool) if f["message_id"] == mid]


async def _archived_image(stack, content: bytes) -> dict:
    item = stack.graph.add(FakeMedia(f"m{uuid.uuid4().int % 10**15}", content=content))
    mid = meta_wamid(fresh_phone())
    status, _ = await stack.post(dumps(envelope([media_message("image", item.media_id, item.sha256_b64(),
                                                               "image/jpeg", mid=mid)])))
    assert status == 200

    async def done():
        msg = await queries.get_message(stack.pool, mid)
        return msg if msg and msg["archive_status"] == "archived" else None

    msg = await wait_until(done, "the message archived")
    assert msg and hashlib.sha256(await stack.read_object(msg["media"][0]["storage_key"])).hexdigest() \
        == msg["media"][0]["sha256"]
    return msg


# 5. Smaller things --------------------------------------------------------------------------------


async def test_a_status_signal_cannot_move_an_outbound_records_time(stack):
    """Guarded (the time is a stored status's or the stored send's). An operator signals a running OutboundMessage a `sent` status whose time is 59
    seconds before the send was stored (the signal's own event time in the history shows roughly
    when that was). check_outbound lets any time within SEND_TIME_SLACK of the stored send pass,
    so the record's time is one no webhook and no send record ever carried: the message appears
    sent before it was. Taking the time from stored status rows (or the send record) in the
    activity, instead of from the workflow input, removes the slack."""
    from tests.test_outbound import _proxy, status_body

    token = await stack.token("sender")
    status, answer = await _proxy(stack, token, {"messaging_product": "whatsapp", "to": "+447700900123",
                                                 "type": "text", "text": {"body": "Your statement is ready."}})
    assert status == 200
    mid = answer["messages"][0]["id"]
    recorded = await stack.pool.fetchval("SELECT recorded_at FROM outbound_sends WHERE message_id = $1", mid)
    wf = await only_workflow(stack, "OutboundMessage")
    early = (recorded - timedelta(seconds=59)).replace(microsecond=0)
    await raw_client(stack).get_workflow_handle(wf.id).signal(SIGNAL_STATUS, StatusSignal(status="sent", timestamp=early))
    real_sent = int(time.time())
    await stack.post(status_body(mid, "sent", real_sent))
    msg = await stack.wait_for_message(mid)
    ts = await stack.pool.fetchval("SELECT ts FROM messages WHERE id = $1", mid)
    assert ts != early, f"the record's time {ts} came from a signal (the send was stored at {recorded})"
    assert msg["type"] == "text"


# Attacks that held ---------------------------------------------------------------------------------


async def test_held_a_send_signalled_after_the_real_one_is_ignored(stack):
    """Held. An operator signals a running OutboundMessage a `record_send` with other text after
    the proxy's own signal: the first send wins, and the record follows the stored send."""
    from tests.test_outbound import PNID, _proxy, status_body
    from wa_archive.models import OutboundSend
    from wa_archive.names import SIGNAL_SEND

    token = await stack.token("sender")
    request = {"messaging_product": "whatsapp", "to": "+447700900123", "type": "text",
               "text": {"body": "Your balance is 120 GBP."}}
    status, answer = await _proxy(stack, token, request)
    assert status == 200
    mid = answer["messages"][0]["id"]
    recorded = await stack.pool.fetchval("SELECT recorded_at FROM outbound_sends WHERE message_id = $1", mid)
    wf = await only_workflow(stack, "OutboundMessage")
    await raw_client(stack).get_workflow_handle(wf.id).signal(SIGNAL_SEND, OutboundSend(
        message_id=mid, phone_number_id=PNID, via="record", recorded_at=recorded,
        request={**request, "text": {"body": "Your balance is 120,000 GBP."}}, response=answer))
    await stack.post(status_body(mid, "sent", int(time.time())))
    msg = await stack.wait_for_message(mid)
    assert msg["rendered_text"] == "Your balance is 120 GBP."


async def test_an_ingest_delivery_naming_no_stored_delivery_fails_at_once_instead_of_retrying_forever(stack):
    """A start of IngestDelivery for a hash the webhook never stored: its bytes will never appear, so
    the run ends red on its first attempt (DeliveryNotStored) rather than retrying without end."""
    from temporalio.client import WorkflowFailureError

    handle = await raw_client(stack).start_workflow(
        "IngestDelivery", IngestDeliveryInput(delivery_sha256=hashlib.sha256(os.urandom(16)).hexdigest()),
        id=f"x-{uuid.uuid4().hex}", task_queue=stack.settings.task_queue,
        execution_timeout=timedelta(seconds=60))
    try:
        await handle.result()
    except WorkflowFailureError as err:
        activity_failure = err.cause
        assert getattr(activity_failure.cause, "type", None) == "DeliveryNotStored", activity_failure.cause
    else:
        raise AssertionError("IngestDelivery completed for a delivery that was never stored")
    attempts = [e for e in (await handle.fetch_history()).events if e.HasField("activity_task_started_event_attributes")]
    assert [e.activity_task_started_event_attributes.attempt for e in attempts] == [1]
