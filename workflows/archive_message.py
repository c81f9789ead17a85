"""ArchiveMessage: one workflow per inbound message — archive each media item, then write the records."""

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from wa_archive.archive.keys import business_scopes
    from wa_archive.models import ArchiveMediaInput, ArchiveRequest, ArchiveResult, WriteRecordsInput
    from wa_archive.names import ARCHIVE_STATUS, WRITE_RECORDS
    from workflows.steps import DB_RETRY, DB_TIMEOUT, archive_media_items, record_failure


@workflow.defn
class ArchiveMessage:
    @workflow.run
    async def run(self, req: ArchiveRequest) -> ArchiveResult:
        items = [
            ArchiveMediaInput(message_id=req.message_id, timestamp=req.timestamp,
                              contact_segment=req.contact.path_segment(), position=position, media=media,
                              business_scopes=business_scopes(req.phone_number_id, req.display_phone_number),
                              contact_phone=req.contact.phone)
            for position, media in enumerate(req.media)
        ]
        records, failures = await archive_media_items(items, req.options)
        status = "failed" if failures else "archived"
        # The message is recorded either way: its text and metadata are archived even when a media
        # item could not be, and the media row says "failed" rather than pretending.
        await workflow.execute_activity(
            WRITE_RECORDS, WriteRecordsInput(request=req, media=records, archive_status=status),
            start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY,
        )
        if failures:
            for item, err in failures:
                await record_failure(req.message_id, "archive_media", item.media.media_id, err)
            workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("failed")])
            raise ApplicationError(
                f"media of {req.message_id} could not be archived: {failures[0][1].cause}",
                type="ArchiveFailed", non_retryable=True,
            )
        workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("archived")])
        return ArchiveResult(message_id=req.message_id, status="archived", media=records)
