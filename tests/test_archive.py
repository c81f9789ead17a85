"""End to end: signed webhook → Temporal → worker → object store + Postgres, on real services."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid

import pytest
from temporalio.client import WorkflowFailureError

from tests.conftest import CONTACT_SECRET, wait_until, workflow_closed
from wa_archive.archive.keys import delivery_workflow_id, message_key, message_workflow_id, safe_id
from wa_archive.db import queries
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid


async def _archived(stack, message_id: str) -> dict | None:
    msg = await queries.get_message(stack.pool, message_id)
    return msg if msg is not None and msg["archive_status"] == "archived" else None


async def _activity_attempts(stack, workflow_id: str, activity: str) -> int:
    """Attempts of every `activity` the workflow's runs so far scheduled, from its history."""
    from temporalio.api.enums.v1 import EventType

    events = (await stack.client.get_workflow_handle(workflow_id).fetch_history()).events
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    return sum(e.activity_task_started_event_attributes.attempt for e in events
               if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
               and scheduled[e.activity_task_started_event_attributes.scheduled_event_id] == activity)


def _media_id() -> str:
    return f"m{uuid.uuid4().int % 10**15}"


async def test_text_message_is_archived_with_its_delivery(stack):
    mid = wamid()
    body = dumps(envelope([message("text", {"body": "Please confirm the transfer of 2,500 GBP."}, mid=mid)]))
    status, answer = await stack.post(body)
    assert status == 200 and answer["status"] == "accepted"
    msg = await stack.wait_for_message(mid)
    assert msg["type"] == "text" and msg["direction"] == "in"
    assert msg["text"] == "Please confirm the transfer of 2,500 GBP."
    assert msg["contact"]["phone"] == "447700900123" and msg["contact"]["name"] == "Priya Raman"
    assert msg["deliveries"][0]["sha256"] == hashlib.sha256(body).hexdigest()
    stored = await stack.pool.fetchval("SELECT body FROM deliveries WHERE sha256 = $1", answer["delivery"])
    assert stored == body  # the exact bytes, provable against the signature
    assert msg["deliveries"][0]["signature"].startswith("sha256=")


@pytest.mark.parametrize("mtype,mime", [("image", "image/jpeg"), ("video", "video/mp4"),
                                        ("audio", "audio/ogg; codecs=opus"),
                                        ("document", "application/pdf"), ("sticker", "image/webp")])
async def test_media_types_are_stored_and_hash_verified(stack_factory, storage_backend, mtype, mime):
    stack = await stack_factory(storage_backend)
    content = os.urandom(50_000)
    media = stack.graph.add(FakeMedia(_media_id(), mime_type=mime, content=content))
    mid = wamid()
    await stack.post(dumps(envelope([media_message(mtype, media.media_id, media.sha256_b64(), mime, mid=mid)])))
    msg = await stack.wait_for_message(mid)
    assert msg["archive_status"] == "archived"
    [item] = msg["media"]
    assert item["status"] == "archived"
    assert item["sha256"] == hashlib.sha256(content).hexdigest()
    assert item["provider_sha256"] == media.sha256_b64()
    assert item["size"] == len(content)
    assert await stack.read_object(item["storage_key"]) == content  # read back from the store
    info = await stack.store.head(item["storage_key"])
    assert info.sha256 == item["sha256"] and info.metadata["message-id"] == mid


async def test_object_key_layout_is_safe_for_real_wamids(stack_factory, storage_backend):
    stack = await stack_factory(storage_backend)
    content = os.urandom(1000)
    media = stack.graph.add(FakeMedia(_media_id(), mime_type="image/png", content=content))
    mid = "wamid.HBgM/NDQ3+NzAw==" + uuid.uuid4().hex
    ts = 1792493114  # 2026-10-20 01:25 UTC, not "now"
    await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(),
                                                   "image/png", mid=mid, ts=ts)])))
    msg = await stack.wait_for_message(mid)
    key = msg["media"][0]["storage_key"]
    assert key == f"archive/2026/10/20/447700900123/{safe_id(mid)}.png"
    assert "/" not in key.split("/", 5)[5] and "+" not in key and "=" not in key
    assert await stack.read_object(key) == content


async def test_large_media_uses_multipart_and_memory_bounded_parts(stack_factory):
    stack = await stack_factory("s3")
    media = stack.graph.add(FakeMedia(_media_id(), mime_type="video/mp4", size=12 * 1024 * 1024 + 123, seed=7))
    mid = wamid()
    await stack.post(dumps(envelope([media_message("video", media.media_id, media.sha256_b64(), "video/mp4", mid=mid)])))
    msg = await stack.wait_for_message(mid)
    item = msg["media"][0]
    assert item["size"] == media.size and item["sha256"] == media.declared_sha256
    data = await stack.read_object(item["storage_key"])
    assert hashlib.sha256(data).hexdigest() == media.declared_sha256


async def test_every_message_type_is_archived(stack):
    target = wamid()
    items = {
        "location": message("location", {"latitude": 51.5, "longitude": -0.12, "name": "Office", "address": "1 Main St"}),
        "contacts": message("contacts", None, contacts=[{"name": {"formatted_name": "Ann Lee"}, "phones": [{"phone": "+1 555"}]}]),
        "interactive": message("interactive", {"type": "list_reply", "list_reply": {"id": "isa", "title": "Stocks & Shares ISA"}}, context={"from": "442071838750", "id": target}),
        "button": message("button", {"payload": "CONFIRM", "text": "Confirm"}, context={"from": "442071838750", "id": target}),
        "reaction": message("reaction", {"message_id": target, "emoji": "👍"}),
        "reaction_removed": message("reaction", {"message_id": target}),
        "edit": message("edit", {"original_message_id": target, "message": {"text": {"body": "corrected"}}}),
        "revoke": message("revoke", {"original_message_id": target}),
        "unsupported": message("unsupported", {"type": "poll_creation"}, errors=[{"code": 131051, "title": "Message type unknown"}]),
        "too_large": message("unknown", None, errors=[{"code": 131052, "title": "Media file size too big"}]),
        "future": message("hologram", {"shape": "cube"}),
    }
    body = dumps(envelope(list(items.values())))
    status, _ = await stack.post(body)
    assert status == 200
    got = {name: await stack.wait_for_message(item["id"]) for name, item in items.items()}
    assert got["location"]["text"] == "Office 1 Main St"
    assert got["contacts"]["text"] == "Ann Lee"
    assert got["interactive"]["text"] == "Stocks & Shares ISA" and got["interactive"]["related_message_id"] == target
    assert got["button"]["text"] == "Confirm" and got["button"]["related_message_id"] == target
    assert got["reaction"]["text"] == "👍" and got["reaction"]["related_message_id"] == target
    assert "reaction_removed" in got["reaction_removed"]["flags"]
    assert "edit" in got["edit"]["flags"] and got["edit"]["related_message_id"] == target
    assert got["edit"]["text"] == "corrected"
    assert "revocation" in got["revoke"]["flags"] and got["revoke"]["related_message_id"] == target
    assert "unsupported" in got["unsupported"]["flags"]
    assert "error" in got["too_large"]["flags"] and got["too_large"]["text"] == "Media file size too big"
    assert "unknown_type" in got["future"]["flags"] and got["future"]["payload"]["hologram"] == {"shape": "cube"}
    for name, item in items.items():
        assert got[name]["payload"] == item  # raw item kept as received


async def test_identity_without_phone_keeps_every_identifier(stack):
    mid = wamid()
    item = message("text", {"body": "hi"}, mid=mid, phone="GB.8830219475520193")
    contacts = [{"profile": {"name": "Lee", "username": "lee.trader"}, "user_id": "GB.8830219475520193"}]
    await stack.post(dumps(envelope([item], contacts=contacts)))
    msg = await stack.wait_for_message(mid)
    assert msg["contact"]["phone"] is None
    assert msg["contact"]["user_id"] == "GB.8830219475520193"
    assert msg["contact"]["username"] == "lee.trader"


async def test_statuses_and_other_fields_are_kept(stack):
    out_id = wamid()
    statuses = [
        {"id": out_id, "status": "sent", "timestamp": "1792493902", "recipient_id": "447700900123",
         "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"}},
        {"id": out_id, "status": "failed", "timestamp": "1792495120", "recipient_id": "447700900123",
         "errors": [{"code": 131026, "title": "Message undeliverable"}]},
    ]
    template_change = {"field": "message_template_status_update",
                       "value": {"event": "APPROVED", "message_template_id": 42, "message_template_name": "t"}}
    contacts = {"field": "smb_app_state_sync", "value": {"state_sync": [{"type": "contact", "action": "add"}]}}
    body = dumps(envelope(statuses=statuses, extra_changes=[template_change, contacts],
                          errors=[{"code": 130429, "title": "Rate limit hit"}]))
    status, answer = await stack.post(body)
    assert status == 200
    for _ in range(200):
        rows = await stack.pool.fetch("SELECT status, payload FROM status_events WHERE message_id = $1 ORDER BY ts", out_id)
        events = await stack.pool.fetch("SELECT field, kind, payload FROM webhook_events WHERE delivery_sha256 = $1 ORDER BY position", answer["delivery"])
        if len(rows) == 2 and len(events) == 2:
            break
        await asyncio.sleep(0.1)
    assert [r["status"] for r in rows] == ["sent", "failed"]
    assert rows[1]["payload"]["errors"][0]["code"] == 131026
    assert {(e["field"], e["kind"]) for e in events} == {("messages", "error"), ("smb_app_state_sync", "unhandled_field")}
    tevent = await stack.pool.fetchrow("SELECT * FROM template_events WHERE delivery_sha256 = $1", answer["delivery"])
    assert tevent["event"] == "APPROVED" and tevent["template_id"] == "42" and tevent["template_name"] == "t"


@pytest.mark.parametrize("inline_fanout_max", [20, 0], ids=["inline", "via-IngestDelivery"])
async def test_duplicate_deliveries_converge_on_one_record_and_one_object(stack_factory, storage_backend,
                                                                          inline_fanout_max):
    stack = await stack_factory(storage_backend, inline_fanout_max=inline_fanout_max)
    content = os.urandom(30_000)
    media = stack.graph.add(FakeMedia(_media_id(), mime_type="image/jpeg", content=content))
    mid = wamid()
    body = dumps(envelope([media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=mid)]))
    results = await asyncio.gather(*(stack.post(body) for _ in range(5)))
    assert all(status == 200 for status, _ in results)
    msg = await stack.wait_for_message(mid)
    # Redelivered after completion, and the same message inside a different delivery body.
    await workflow_closed(stack.client, message_workflow_id(CONTACT_SECRET, mid))
    status, first = await stack.post(body)
    assert status == 200
    second = message("text", {"body": "second"})
    other = dumps(envelope([media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=mid),
                            second]))
    status, answer = await stack.post(other)
    assert status == 200
    # Everything the two deliveries could start has run to its end before counting what it left.
    if inline_fanout_max == 0:
        for sha in (first["delivery"], answer["delivery"]):
            await workflow_closed(stack.client, delivery_workflow_id(sha))
    await stack.wait_for_message(second["id"])
    for message_id in (mid, second["id"]):
        await workflow_closed(stack.client, message_workflow_id(CONTACT_SECRET, message_id))
    assert await stack.pool.fetchval("SELECT count(*) FROM messages WHERE id = $1", mid) == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM media WHERE message_id = $1", mid) == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM deliveries") == 2
    # One archiving run fetched it: once per attempt of its one archive_media activity (a loaded machine
    # may time an attempt out and retry), never by a second run or a second activity.
    attempts = await _activity_attempts(stack, message_workflow_id(CONTACT_SECRET, mid), "archive_media")
    assert 1 <= media.downloads <= attempts, (media.downloads, attempts)
    key = msg["media"][0]["storage_key"]
    assert await stack.read_object(key) == content
    assert len(await stack.stored_objects()) == 1, "exactly one stored object (one version on S3)"
    shown = await stack.wait_for_message(mid)
    assert len(shown["deliveries"]) == 2


async def test_transient_errors_are_retried_until_archived(stack):
    content = os.urandom(2000)
    media = stack.graph.add(FakeMedia(_media_id(), content=content, fail_times=2, fail_status=500))
    mid = wamid()
    await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=mid)])))
    msg = await stack.wait_for_message(mid)
    assert msg["media"][0]["status"] == "archived"
    assert media.metadata_calls == 3
    attempts = await stack.pool.fetch("SELECT attempt, http_status FROM archive_attempts WHERE message_id = $1 ORDER BY attempt", mid)
    assert [(a["attempt"], a["http_status"]) for a in attempts] == [(1, 500), (2, 500)]
    assert await stack.pool.fetchval("SELECT count(*) FROM archive_failures") == 0


async def test_404_five_times_records_a_critical_failure_with_every_attempt(stack):
    from structlog.testing import capture_logs

    media = stack.graph.add(FakeMedia(_media_id(), content=b"x" * 100, status=404))
    mid = wamid()
    with capture_logs() as logs:
        await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=mid)])))
        failure = await stack.wait_for_failure(mid)
        for _ in range(50):
            if any(e["event"] == "archive_failed" for e in logs):
                break
            await asyncio.sleep(0.1)
    [critical] = [e for e in logs if e["event"] == "archive_failed"]
    assert critical["log_level"] == "critical" and critical["message_id"] == mid and critical["attempts"] == 5
    assert not any("447700900123" in str(e) for e in logs if e["log_level"] == "info"), "no phone at INFO"
    assert failure["stage"] == "archive_media" and failure["retry_state"] == "MAXIMUM_ATTEMPTS_REACHED"
    assert [a["attempt"] for a in failure["attempts"]] == [1, 2, 3, 4, 5]
    assert all(a["http_status"] == 404 and a["error_type"] == "MediaNotFound" for a in failure["attempts"])
    ats = [a["at"] for a in failure["attempts"]]
    assert ats == sorted(ats)
    msg = await stack.wait_for_message(mid)
    assert msg["archive_status"] == "failed" and msg["media"][0]["status"] == "failed"
    assert msg["media"][0]["sha256"] is None
    # The record is written before the workflow ends: wait for its end rather than read it at once.
    handle = stack.client.get_workflow_handle(message_workflow_id(CONTACT_SECRET, mid))
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=60)


async def test_403_fails_at_once_with_a_scope_hint(stack):
    media = stack.graph.add(FakeMedia(_media_id(), content=b"x" * 100, status=403))
    mid = wamid()
    await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=mid)])))
    failure = await stack.wait_for_failure(mid)
    assert failure["retry_state"] == "NON_RETRYABLE_FAILURE"
    assert len(failure["attempts"]) == 1 and failure["attempts"][0]["http_status"] == 403
    assert "whatsapp_business_messaging" in failure["attempts"][0]["error"]
    assert media.metadata_calls == 1


async def test_provider_hash_mismatch_is_never_recorded_as_good(stack_factory, storage_backend):
    stack = await stack_factory(storage_backend, retry_max_attempts=2)
    content = os.urandom(4000)
    media = stack.graph.add(FakeMedia(_media_id(), content=content, wrong_bytes=True))
    mid = wamid()
    await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=mid)])))
    failure = await stack.wait_for_failure(mid)
    assert {a["error_type"] for a in failure["attempts"]} == {"MediaHashMismatch"}
    msg = await stack.wait_for_message(mid)
    assert msg["media"][0]["status"] == "failed" and msg["media"][0]["storage_key"] is None
    # Nothing may be visible in the store under the key this message's image would have had.
    from datetime import datetime

    from wa_archive.archive.keys import media_object_key
    expected_key = media_object_key(mid, datetime.fromisoformat(msg["timestamp"]), "447700900123", "image/jpeg")
    assert expected_key.startswith("archive/") and await stack.store.head(expected_key) is None


async def test_a_failed_message_is_completed_by_a_later_delivery(stack):
    content = os.urandom(3000)
    media = stack.graph.add(FakeMedia(_media_id(), content=content, status=404))
    mid = wamid()
    item = media_message("image", media.media_id, media.sha256_b64(), "image/jpeg", mid=mid)
    await stack.post(dumps(envelope([item])))
    await stack.wait_for_failure(mid)
    # The failure row is written just before the run closes red; a delivery in between would find it
    # still running (and rightly start nothing), so the redelivery comes after it has closed.
    from temporalio.client import WorkflowExecutionStatus

    assert await workflow_closed(stack.client, message_workflow_id(CONTACT_SECRET, mid)) == WorkflowExecutionStatus.FAILED
    media.status = None  # the cause is fixed; the message arrives again inside another delivery
    status, _ = await stack.post(dumps(envelope([item, message("text", {"body": "later"})])))
    assert status == 200
    msg = await wait_until(lambda: _archived(stack, mid), f"{mid} archived after the redelivery", timeout=30)
    assert msg["media"][0]["status"] == "archived"
    assert await stack.read_object(msg["media"][0]["storage_key"]) == content
    assert len(await stack.pool.fetch("SELECT 1 FROM archive_failures WHERE message_id = $1", mid)) == 1


async def test_operators_find_workflows_by_message_key_status_and_contact_key(stack):
    from wa_archive.archive.keys import contact_key
    from wa_archive.names import ARCHIVE_STATUS, CONTACT_KEY

    mid = wamid()
    await stack.post(dumps(envelope([message("text", {"body": "find me"}, mid=mid)])))
    await stack.wait_for_message(mid)
    for _ in range(100):
        found = [wf async for wf in stack.client.list_workflows(
            f"WhatsAppMessageId = '{message_key(CONTACT_SECRET, mid)}'")]
        if found and found[0].typed_search_attributes.get(ARCHIVE_STATUS) == "archived":
            break
        await asyncio.sleep(0.2)
    [wf] = found
    assert wf.id == message_workflow_id(CONTACT_SECRET, mid)
    assert wf.typed_search_attributes.get(ARCHIVE_STATUS) == "archived"
    key = wf.typed_search_attributes.get(CONTACT_KEY)
    assert key == contact_key(CONTACT_SECRET, "447700900123") and "447700900123" not in key


async def test_histories_replay_deterministically(stack_factory):
    stack = await stack_factory(inline_fanout_max=0)  # also exercise the IngestDelivery path
    from temporalio.worker import Replayer

    from tests.conftest import DATA_CONVERTER
    from workflows.archive_message import ArchiveMessage
    from workflows.ingest_delivery import IngestDelivery

    good = stack.graph.add(FakeMedia(_media_id(), content=os.urandom(500), fail_times=1))
    bad = stack.graph.add(FakeMedia(_media_id(), content=b"x", status=403))
    ok_id, bad_id = wamid(), wamid()
    status, answer = await stack.post(dumps(envelope([
        media_message("image", good.media_id, good.sha256_b64(), "image/jpeg", mid=ok_id),
        media_message("image", bad.media_id, bad.sha256_b64(), "image/jpeg", mid=bad_id)])))
    await stack.wait_for_message(ok_id)
    await stack.wait_for_failure(bad_id)
    replayer = Replayer(workflows=[ArchiveMessage, IngestDelivery], data_converter=DATA_CONVERTER)
    for wf_id in (message_workflow_id(CONTACT_SECRET, ok_id), message_workflow_id(CONTACT_SECRET, bad_id),
                  f"wa-delivery-{answer['delivery']}"):
        await workflow_closed(stack.client, wf_id)
        history = await stack.client.get_workflow_handle(wf_id).fetch_history()
        await replayer.replay_workflow(history)


async def test_committed_golden_histories_still_replay():
    """Histories recorded by an earlier version: a workflow change that breaks runs already in
    flight fails here (re-record with care, never to silence a real non-determinism; the
    disposition history is written by test_retention with RECORD_HISTORY=<path>)."""
    from pathlib import Path

    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    from tests.conftest import DATA_CONVERTER
    from workflows.archive_message import ArchiveMessage
    from workflows.disposition import Disposition
    from workflows.ingest_delivery import IngestDelivery
    from workflows.outbound_message import OutboundMessage

    replayer = Replayer(workflows=[ArchiveMessage, IngestDelivery, OutboundMessage, Disposition],
                        data_converter=DATA_CONVERTER)
    files = sorted((Path(__file__).parent / "histories").glob("*.json"))
    assert len(files) == 5
    for path in files:
        await replayer.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))
