"""OutboundMessage: one workflow per sent message, fed by two signals in any order.

`record_send` carries the send request and Meta's answer (from the proxy or the record API);
`status` carries each status webhook. Whichever comes first starts the workflow (signal-with-start).
Once the send is known and the message reached `sent` (or failed, or `sent` did not come in time),
the template in force is snapshotted, the header or message media archived, and the content the
customer received is recorded.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from wa_archive.archive.keys import business_scopes, normalize_phone
    from wa_archive.models import (
        ArchiveMediaInput,
        ArchiveResult,
        Contact,
        MediaRef,
        OutboundSend,
        OutboundStart,
        StatusSignal,
        TemplateSnapshotInput,
        TemplateSnapshotResult,
        WriteOutboundInput,
    )
    from wa_archive.names import ARCHIVE_STATUS, SIGNAL_SEND, SIGNAL_STATUS, SNAPSHOT_TEMPLATE, WRITE_OUTBOUND
    from wa_archive.sources.meta.templates import header_media, message_media
    from workflows.steps import DB_RETRY, DB_TIMEOUT, archive_media_items, media_retry, record_failure

# Any of these means the message left Meta: `read` can arrive without `delivered`, and a late `sent`
# must not hold the archive back.
SENT_OR_LATER = ("sent", "delivered", "read", "played")


@workflow.defn
class OutboundMessage:
    def __init__(self) -> None:
        self.send: OutboundSend | None = None
        self.statuses: list[StatusSignal] = []

    @workflow.signal(name=SIGNAL_SEND)
    def record_send(self, send: OutboundSend) -> None:
        if self.send is None:  # the first record wins; a repeat is the same send
            self.send = send

    @workflow.signal(name=SIGNAL_STATUS)
    def status(self, status: StatusSignal) -> None:
        self.statuses.append(status)

    def _first(self, names: tuple[str, ...]) -> StatusSignal | None:
        return next((s for s in self.statuses if s.status in names), None)

    @workflow.run
    async def run(self, start: OutboundStart) -> ArchiveResult:
        opts = start.options
        flags: list[str] = []
        try:
            await workflow.wait_condition(lambda: self.send is not None,
                                          timeout=timedelta(seconds=opts.record_wait_seconds))
        except asyncio.TimeoutError:
            return await self._statuses_only(start)
        try:
            await workflow.wait_condition(
                lambda: self._first(SENT_OR_LATER + ("failed",)) is not None,
                timeout=timedelta(seconds=opts.sent_wait_seconds))
        except asyncio.TimeoutError:
            flags.append("sent_status_missing")  # archived with the definition in force now
        send = self.send
        assert send is not None
        sent = self._first(SENT_OR_LATER)
        failed = self._first(("failed",))
        if failed is not None and sent is None:
            flags.append("send_failed")
        request = send.request
        mtype = str(request.get("type") or "text")
        waba_id = next((s.waba_id for s in self.statuses if s.waba_id), None) or opts.waba_id
        timestamp = (sent.timestamp if sent and sent.timestamp else None) or send.recorded_at
        contacts = send.response.get("contacts") or [{}]
        contact = Contact(phone=normalize_phone(str(request.get("to") or "")),
                          wa_id=contacts[0].get("wa_id") if isinstance(contacts[0], dict) else None)

        template: TemplateSnapshotResult | None = None
        text: str | None = None
        media_ref = None
        if mtype == "template":
            send_template = request.get("template") or {}
            media_ref = header_media(send_template)
            if waba_id is None:
                flags.append("template_not_snapshotted")
            else:
                try:
                    template = await workflow.execute_activity(
                        SNAPSHOT_TEMPLATE,
                        TemplateSnapshotInput(message_id=start.message_id, waba_id=waba_id,
                                              send_template=send_template),
                        result_type=TemplateSnapshotResult, start_to_close_timeout=timedelta(minutes=2),
                        retry_policy=media_retry(opts.archive))
                    text = template.rendered_text
                except ActivityError as err:
                    flags.append("template_not_snapshotted")
                    await record_failure(start.message_id, "snapshot_template", None, err)
        else:
            media_ref = message_media(request)
            body = request.get(mtype) if isinstance(request.get(mtype), dict) else {}
            text = body.get("body") or body.get("caption")

        items = []
        if media_ref is not None:
            items.append(ArchiveMediaInput(
                message_id=start.message_id, timestamp=timestamp,
                contact_segment=contact.path_segment(), position=0,
                business_scopes=business_scopes(send.phone_number_id, None), contact_phone=contact.phone,
                media=MediaRef(media_id=media_ref.media_id or media_ref.link or "?",
                               kind=media_ref.kind, filename=media_ref.filename,
                               link=None if media_ref.media_id else media_ref.link)))
        records, failures = await archive_media_items(items, opts.archive)
        status = "failed" if failures else "archived"
        send_template = request.get("template") or {}
        await workflow.execute_activity(
            WRITE_OUTBOUND,
            WriteOutboundInput(
                message_id=start.message_id, timestamp=timestamp, type=mtype, contact=contact,
                phone_number_id=send.phone_number_id, waba_id=waba_id, text=text, template=template,
                template_name=send_template.get("name"),
                template_language=(send_template.get("language") or {}).get("code"),
                flags=flags, payload={"request": request, "response": send.response, "via": send.via},
                media=records, archive_status=status),
            start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
        if failures:
            for item, err in failures:
                await record_failure(start.message_id, "archive_media", item.media.media_id, err)
            workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("failed")])
            raise ApplicationError(f"media of {start.message_id} could not be archived",
                                   type="ArchiveFailed", non_retryable=True)
        workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("archived")])
        return ArchiveResult(message_id=start.message_id, status="archived", media=records)

    async def _statuses_only(self, start: OutboundStart) -> ArchiveResult:
        """Statuses came but no send record did: keep a row so the timeline can be found."""
        first = self.statuses[0] if self.statuses else None
        await workflow.execute_activity(
            WRITE_OUTBOUND,
            WriteOutboundInput(message_id=start.message_id,
                               timestamp=(first.timestamp if first and first.timestamp else workflow.now()),
                               type="unknown", waba_id=first.waba_id if first else None,
                               flags=["no_send_record"]),
            start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
        workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("archived")])
        return ArchiveResult(message_id=start.message_id, status="archived")
