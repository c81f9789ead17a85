"""History sync: the chat history Meta sends when a WhatsApp Business app number is onboarded is
archived as messages flagged `backfilled`, in both directions, with the sync's phase and chunk on
every record; media named by a later history webhook is archived as a record of its own; a chunk
too large to fan out inline goes through IngestDelivery; malformed parts and a declined sharing are
kept raw; failures are recorded like any other."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

from temporalio.client import WorkflowExecutionStatus

from tests.test_cli import _cli
from tests.test_temporal_trust import built_request, closed, only_workflow, raw_client, running_worker
from wa_archive.db import queries
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import (
    dumps,
    history_chunk,
    history_declined,
    history_envelope,
    history_message,
    wamid,
)

USER = "447700900123"
OTHER = "447700900456"


async def test_a_history_chunk_is_archived_as_backfilled_messages_in_both_directions(stack, database_url):
    inbound, outbound, placeholder, other = wamid(), wamid(), wamid(), wamid()
    chunk = history_chunk({
        USER: [history_message("text", {"body": "can I move my appointment?"}, mid=inbound, ts=1750000000),
               history_message("text", {"body": "of course, Thursday 10:00"}, outbound=True, mid=outbound,
                               status="DELIVERED", ts=1750000060),
               history_message("media_placeholder", None, outbound=True, mid=placeholder, ts=1750000120)],
        OTHER: [history_message("text", {"body": "thanks"}, user=OTHER, mid=other, ts=1750000200)],
    }, phase=1, chunk_order=3, progress=40)
    status, answer = await stack.post(dumps(history_envelope([chunk])))
    assert status == 200 and answer["updates"] == 4
    got = {mid: await stack.wait_for_message(mid) for mid in (inbound, outbound, placeholder, other)}
    history_flags = ["backfilled", "history_phase:1", "history_chunk:3"]
    assert got[inbound]["direction"] == "in" and got[inbound]["flags"] == history_flags
    assert got[inbound]["contact"]["phone"] == USER and got[inbound]["text"] == "can I move my appointment?"
    assert got[outbound]["direction"] == "out" and got[outbound]["flags"] == history_flags
    assert got[outbound]["contact"]["phone"] == USER and got[outbound]["text"] == "of course, Thursday 10:00"
    assert got[outbound]["timestamp"] == "2025-06-15T15:07:40+00:00"
    assert got[outbound]["payload"]["history_context"] == {"status": "DELIVERED"}
    # Media the history never named is said to be missing, not pretended archived.
    assert got[placeholder]["flags"] == history_flags + ["media_without_id"] and got[placeholder]["media"] == []
    assert got[other]["contact"]["phone"] == OTHER and got[other]["direction"] == "in"
    assert all(m["archive_status"] == "archived" for m in got.values())

    shown = await _cli(database_url, "show", outbound, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["flags"] == history_flags
    token = await stack.token("auditor")
    async with stack.http.get(f"{stack.url}/api/v1/messages", params={"phone": USER},
                              headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        listed = (await resp.json())["items"]
    assert {m["id"]: m["flags"] for m in listed} == {inbound: history_flags, outbound: history_flags,
                                                     placeholder: history_flags + ["media_without_id"]}


async def test_media_a_later_history_webhook_names_is_archived_beside_the_message(stack):
    """The chunk gives a media message without its media; a later history webhook names the media id.
    The message's first record stays as written; the media is archived, hashed, in a record of its
    own (`<wamid>#media`) that points at it."""
    mid = wamid()
    first = history_chunk({USER: [history_message("media_placeholder", None, mid=mid, ts=1750000000)]})
    assert (await stack.post(dumps(history_envelope([first]))))[0] == 200
    original = await stack.wait_for_message(mid)
    content = os.urandom(25_000)
    media = stack.graph.add(FakeMedia(f"hist-{uuid.uuid4().hex[:12]}", mime_type="image/jpeg", content=content))
    later = history_chunk({USER: [history_message("image", {"id": media.media_id, "mime_type": "image/jpeg",
                                                            "sha256": media.sha256_b64()}, mid=mid, ts=1750000000)]},
                          phase=0, chunk_order=2, progress=100)
    assert (await stack.post(dumps(history_envelope([later]))))[0] == 200
    named = await stack.wait_for_message(mid + "#media")
    assert named["related_message_id"] == mid and named["direction"] == "in"
    assert named["flags"] == ["backfilled", "history_phase:0", "history_chunk:2", "history_media"]
    [m] = named["media"]
    assert m["status"] == "archived" and m["sha256"] == hashlib.sha256(content).hexdigest()
    assert await stack.read_object(m["storage_key"]) == content
    unchanged = await queries.get_message(stack.pool, mid)
    assert unchanged is not None and unchanged["media"] == [] and unchanged["flags"] == original["flags"]


async def test_media_of_a_history_message_that_cannot_be_fetched_is_a_recorded_failure(stack):
    mid = wamid()
    media = stack.graph.add(FakeMedia(f"gone-{uuid.uuid4().hex[:12]}", content=b"x", status=403))
    chunk = history_chunk({USER: [history_message("document", {"id": media.media_id, "mime_type": "application/pdf"},
                                                  outbound=True, mid=mid)]})
    assert (await stack.post(dumps(history_envelope([chunk]))))[0] == 200
    failure = await stack.wait_for_failure(mid + "#media")
    assert failure["stage"] == "archive_media" and failure["media_id"] == media.media_id
    msg = await stack.wait_for_message(mid + "#media")
    assert msg["archive_status"] == "failed" and msg["media"][0]["status"] == "failed"
    assert "backfilled" in msg["flags"]


async def test_a_history_chunk_larger_than_the_inline_limit_goes_through_ingest_delivery(stack_factory):
    stack = await stack_factory(inline_fanout_max=5)
    ids = [wamid() for _ in range(12)]
    chunk = history_chunk({USER: [history_message("text", {"body": f"message {i}"}, mid=mid, outbound=i % 2 == 1)
                                  for i, mid in enumerate(ids[:7])],
                           OTHER: [history_message("text", {"body": "hi"}, user=OTHER, mid=mid) for mid in ids[7:]]},
                          phase=2, chunk_order=9)
    status, answer = await stack.post(dumps(history_envelope([chunk])))
    assert status == 200 and answer["updates"] == 12
    wf = await only_workflow(stack, "IngestDelivery")
    assert wf.id == f"wa-delivery-{answer['delivery']}"
    for i, mid in enumerate(ids):
        msg = await stack.wait_for_message(mid)
        assert "backfilled" in msg["flags"] and "history_chunk:9" in msg["flags"]
        assert msg["direction"] == ("out" if i < 7 and i % 2 == 1 else "in")
    assert await stack.pool.fetchval("SELECT updates FROM deliveries WHERE sha256 = $1", answer["delivery"]) == 12


async def test_invalid_history_parts_and_a_declined_sharing_are_kept_raw_and_answered_200(stack):
    good = wamid()
    no_id = history_message("text", {"body": "no id"})
    del no_id["id"]
    chunk = history_chunk({USER: [no_id, "not an object", history_message("text", {"body": "ok"}, mid=good)]})
    chunk["threads"] += ["not a thread", {"id": OTHER, "messages": {"not": "a list"}}]
    body = history_envelope([chunk, "not a chunk", {"metadata": {"phase": 2, "chunk_order": 1, "progress": 100},
                                                    "threads": []}])
    status, answer = await stack.post(dumps(body))
    assert status == 200
    assert (await stack.wait_for_message(good))["text"] == "ok"
    kinds = [r["kind"] for r in await stack.pool.fetch(
        "SELECT kind FROM webhook_events WHERE delivery_sha256 = $1 ORDER BY position", answer["delivery"])]
    assert kinds == ["invalid_history_message", "invalid_history_message", "invalid_history_thread",
                     "invalid_history_thread", "invalid_history", "history_progress"]

    status, answer = await stack.post(dumps(history_declined()))
    assert status == 200
    row = await stack.pool.fetchrow("SELECT field, kind, payload FROM webhook_events WHERE delivery_sha256 = $1",
                                    answer["delivery"])
    assert (row["field"], row["kind"]) == ("history", "history_declined")
    assert row["payload"]["errors"][0]["code"] == 2593109

    not_a_list = history_envelope([])
    not_a_list["entry"][0]["changes"][0]["value"]["history"] = "nope"
    status, answer = await stack.post(dumps(not_a_list))
    assert status == 200
    assert await stack.pool.fetchval("SELECT kind FROM webhook_events WHERE delivery_sha256 = $1",
                                     answer["delivery"]) == "invalid_history"


async def test_a_history_message_handed_over_as_live_capture_is_refused(stack_factory):
    """Dropping `backfilled` would let a past message pass for live capture (and into latency
    figures): the worker builds it again from the stored delivery and refuses the difference."""
    stack = await stack_factory(run_worker=False)
    mid = wamid()
    chunk = history_chunk({USER: [history_message("text", {"body": "old"}, mid=mid)]})
    status, answer = await stack.post(dumps(history_envelope([chunk])))
    assert status == 200
    real = await built_request(stack, answer["delivery"])
    handle = await raw_client(stack).start_workflow(
        "ArchiveMessage", real.model_copy(update={"flags": []}), id=f"wa-msg-{uuid.uuid4().hex}",
        task_queue=stack.settings.task_queue)
    async with running_worker(stack):
        assert await closed(handle) == WorkflowExecutionStatus.FAILED
        msg = await stack.wait_for_message(mid)
    assert msg["flags"] == ["backfilled", "history_phase:0", "history_chunk:1"]
    [failure] = [f for f in await queries.list_failures(stack.pool) if f["message_id"] == mid]
    assert failure["last_error_type"] == "UnverifiedMessage" and failure["last_error"].endswith("in: flags")
