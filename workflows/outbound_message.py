"""OutboundMessage: one workflow per sent message, fed by two signals in any order.

`record_send` carries the send request and Meta's answer (from the proxy or the record API);
`status` carries each status webhook. Whichever comes first starts the workflow (signal-with-start).
Once the send is known and the message reached `sent` (or failed, or `sent` did not come in time),
the template in force is snapshotted, the header or message media archived, and the content the
customer received is recorded.
"""

import functools
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from wa_archive.archive.keys import business_scopes
    from wa_archive.models import (
        ArchiveMediaInput,
        ArchiveOptions,
        ArchiveResult,
        OutboundSend,
        OutboundStart,
        StatusSignal,
        StoredOutbound,
        TemplateSnapshotInput,
        TemplateSnapshotResult,
        WriteOutboundInput,
    )
    from wa_archive.names import (
        ARCHIVE_STATUS,
        READ_STORED_OUTBOUND,
        SIGNAL_SEND,
        SIGNAL_STATUS,
        SIGNAL_SUPERSEDED,
        SNAPSHOT_TEMPLATE,
        WRITE_OUTBOUND,
    )
    from wa_archive.sources.meta.outbound_request import read_send
    from workflows.retries import DB_RETRY, media_retry
    from workflows.steps import (
        DB_TIMEOUT,
        MediaOutcome,
        archive_media_items,
        finish_message,
        record_failure,
        write_record,
    )

# Any of these means the message left Meta: `read` can arrive without `delivered`, and a late `sent`
# must not hold the archive back.
SENT_OR_LATER = ("sent", "delivered", "read", "played")
# Runs started from here on decide from what the archive stored, not from their signals.
STORED_PATCH = "decide-from-stored"


@workflow.defn
class OutboundMessage:
    def __init__(self) -> None:
        self.send: OutboundSend | None = None
        self.statuses: list[StatusSignal] = []
        self.superseded = False

    @workflow.signal(name=SIGNAL_SEND)
    def record_send(self, send: OutboundSend) -> None:
        if self.send is None:  # the first record wins; a repeat is the same send
            self.send = send

    @workflow.signal(name=SIGNAL_STATUS)
    def status(self, status: StatusSignal) -> None:
        self.statuses.append(status)

    @workflow.signal(name=SIGNAL_SUPERSEDED)
    def recorded_from_delivery(self) -> None:
        self.superseded = True

    def _first(self, names: tuple[str, ...]) -> StatusSignal | None:
        return next((s for s in self.statuses if s.status in names), None)

    @workflow.run
    async def run(self, start: OutboundStart) -> ArchiveResult:
        if not workflow.patched(STORED_PATCH):
            return await self._run_from_signals(start)
        opts = start.options
        try:
            await workflow.wait_condition(lambda: self.send is not None or self.superseded,
                                          timeout=timedelta(seconds=opts.record_wait_seconds))
        except TimeoutError:
            pass
        if self.superseded and self.send is None:
            return self._superseded(start)
        # Signals are anyone's on the cluster: they only say when to look. What is recorded follows
        # from the send and the status webhooks the archive itself stored.
        seen = len(self.statuses)
        stored = await self._read_stored(start.message_id)
        if stored.send is None:
            return await self._statuses_only(start, stored.statuses)
        flags: list[str] = []
        deadline = workflow.now() + timedelta(seconds=opts.sent_wait_seconds)
        while not any(s.status in SENT_OR_LATER + ("failed",) for s in stored.statuses):
            remaining = deadline - workflow.now()
            try:
                if remaining <= timedelta(0):
                    raise TimeoutError
                await workflow.wait_condition(functools.partial(self._more_statuses_than, seen), timeout=remaining)
            except TimeoutError:
                flags.append("sent_status_missing")  # archived with the definition in force now
                break
            seen = len(self.statuses)
            stored = await self._read_stored(start.message_id)
        if stored.send is None:  # removed meanwhile (erased): nothing left to record it from
            return await self._statuses_only(start, stored.statuses)
        return await self._record(start, stored.send, stored.statuses, flags)

    def _more_statuses_than(self, seen: int) -> bool:
        return len(self.statuses) > seen

    async def _read_stored(self, message_id: str) -> StoredOutbound:
        return await workflow.execute_activity(READ_STORED_OUTBOUND, message_id, result_type=StoredOutbound,
                                               start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)

    def _superseded(self, start: OutboundStart) -> ArchiveResult:
        """An echo carried the message: ArchiveMessage records it, and its statuses join it by id."""
        workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("superseded")])
        return ArchiveResult(message_id=start.message_id, status="superseded")

    async def _run_from_signals(self, start: OutboundStart) -> ArchiveResult:
        """How runs started before STORED_PATCH decide: from what the signals say. Kept so that their
        histories replay; the worker's checks refuse a record a forged signal would have changed."""
        opts = start.options
        flags: list[str] = []
        try:
            await workflow.wait_condition(lambda: self.send is not None or self.superseded,
                                          timeout=timedelta(seconds=opts.record_wait_seconds))
        except TimeoutError:
            return await self._statuses_only(start, self.statuses)
        if self.send is None:
            return self._superseded(start)
        try:
            await workflow.wait_condition(
                lambda: self._first(SENT_OR_LATER + ("failed",)) is not None,
                timeout=timedelta(seconds=opts.sent_wait_seconds))
        except TimeoutError:
            flags.append("sent_status_missing")  # archived with the definition in force now
        send = self.send
        assert send is not None
        return await self._record(start, send, self.statuses, flags)

    async def _record(self, start: OutboundStart, send: OutboundSend, statuses: list[StatusSignal],
                      flags: list[str]) -> ArchiveResult:
        """Snapshot the template, archive the media and record the message, from the send and statuses."""
        opts = start.options

        def first(names: tuple[str, ...]) -> StatusSignal | None:
            return next((s for s in statuses if s.status in names), None)

        sent = first(SENT_OR_LATER)
        if first(("failed",)) is not None and sent is None:
            flags.append("send_failed")
        content = read_send(send.request, send.response)
        waba_id = next((s.waba_id for s in statuses if s.waba_id), None) or opts.waba_id
        timestamp = (sent.timestamp if sent and sent.timestamp else None) or send.recorded_at

        template: TemplateSnapshotResult | None = None
        text = content.text
        if content.type == "template":
            template = await self._snapshot_template(start.message_id, waba_id, content.send_template, opts.archive)
            if template is None:
                flags.append("template_not_snapshotted")
            else:
                text = template.rendered_text

        items: list[ArchiveMediaInput] = []
        if content.media is not None:
            items.append(ArchiveMediaInput(
                message_id=start.message_id, timestamp=timestamp,
                contact_segment=content.contact.path_segment(), position=0, media=content.media,
                business_scopes=business_scopes(send.phone_number_id, None), contact_phone=content.contact.phone))
        media = await archive_media_items(items, opts.archive)
        await write_record(
            WRITE_OUTBOUND, start.message_id,
            WriteOutboundInput(
                message_id=start.message_id, timestamp=timestamp, type=content.type, contact=content.contact,
                phone_number_id=send.phone_number_id, waba_id=waba_id, text=text, template=template,
                template_name=content.template_name, template_language=content.template_language,
                flags=flags, payload={"request": send.request, "response": send.response, "via": send.via},
                media=media.records, archive_status=media.status))
        return await finish_message(start.message_id, media, name_first_cause=False)

    async def _snapshot_template(self, message_id: str, waba_id: str | None, send_template: dict[str, Any],
                                 opts: ArchiveOptions) -> TemplateSnapshotResult | None:
        """The template in force, snapshotted; None when there is no WABA to ask or the retries are spent."""
        if waba_id is None:
            return None
        try:
            return await workflow.execute_activity(
                SNAPSHOT_TEMPLATE,
                TemplateSnapshotInput(message_id=message_id, waba_id=waba_id, send_template=send_template),
                result_type=TemplateSnapshotResult, start_to_close_timeout=timedelta(minutes=2),
                retry_policy=media_retry(opts))
        except ActivityError as err:
            await record_failure(message_id, "snapshot_template", None, err)
            return None

    async def _statuses_only(self, start: OutboundStart, statuses: list[StatusSignal]) -> ArchiveResult:
        """Statuses came but no send record did: keep a row so the timeline can be found."""
        first = statuses[0] if statuses else None
        await write_record(
            WRITE_OUTBOUND, start.message_id,
            WriteOutboundInput(message_id=start.message_id,
                               timestamp=(first.timestamp if first and first.timestamp else workflow.now()),
                               type="unknown", waba_id=first.waba_id if first else None,
                               flags=["no_send_record"]))
        return await finish_message(start.message_id, MediaOutcome(records=[], failures=[]))
