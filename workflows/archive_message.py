"""ArchiveMessage: one workflow per inbound message — check it, archive each media item, then write the records."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from wa_archive.archive.keys import business_scopes
    from wa_archive.models import ArchiveMediaInput, ArchiveRequest, ArchiveResult, WriteRecordsInput
    from wa_archive.names import VERIFY_MESSAGE, WRITE_RECORDS
    from workflows.steps import archive_media_items, finish_message, write_record


# Histories written before the check came first replay without it.
VERIFY_FIRST = "verify-message-before-media"


@workflow.defn
class ArchiveMessage:
    @workflow.run
    async def run(self, req: ArchiveRequest) -> ArchiveResult:
        if req.media and workflow.patched(VERIFY_FIRST):
            # The input is anyone's who can start a workflow: it must be the message the archive
            # stored before any media is fetched, or a refused request could still leave an object
            # at the real message's key. A refusal is a critical failure and a red workflow. (Without
            # media there is nothing to store first: write_records makes the same checks.)
            await write_record(VERIFY_MESSAGE, req.message_id, req)
        items = [
            ArchiveMediaInput(message_id=req.message_id, timestamp=req.timestamp,
                              contact_segment=req.contact.path_segment(), position=position, media=media,
                              business_scopes=business_scopes(req.phone_number_id, req.display_phone_number),
                              contact_phone=req.contact.phone)
            for position, media in enumerate(req.media)
        ]
        media = await archive_media_items(items, req.options)
        # The message is recorded either way: its text and metadata are archived even when a media
        # item could not be, and the media row says "failed" rather than pretending.
        await write_record(WRITE_RECORDS, req.message_id,
                           WriteRecordsInput(request=req, media=media.records, archive_status=media.status))
        return await finish_message(req.message_id, media)
