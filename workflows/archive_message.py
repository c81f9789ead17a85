"""ArchiveMessage: one workflow per message — archive each media item, then write the records."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from wa_archive.errors import NON_RETRYABLE
    from wa_archive.models import (
        ArchiveMediaInput,
        ArchiveRequest,
        ArchiveResult,
        CriticalFailureInput,
        MediaRecord,
        WriteRecordsInput,
    )
    from wa_archive.names import ARCHIVE_MEDIA, ARCHIVE_STATUS, RECORD_CRITICAL_FAILURE, WRITE_RECORDS

# Postgres writes retry until Postgres is back: failing them would lose nothing but would turn a
# short database outage into a pile of red workflows. The media step has the bounded policy.
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
DB_TIMEOUT = timedelta(seconds=60)


@workflow.defn
class ArchiveMessage:
    @workflow.run
    async def run(self, req: ArchiveRequest) -> ArchiveResult:
        opts = req.options
        media_retry = RetryPolicy(
            initial_interval=timedelta(seconds=opts.retry_initial_interval),
            backoff_coefficient=opts.retry_backoff,
            maximum_interval=timedelta(seconds=max(opts.retry_max_interval, opts.retry_initial_interval)),
            maximum_attempts=opts.retry_max_attempts,
            non_retryable_error_types=NON_RETRYABLE,
        )
        records: list[MediaRecord] = []
        failures: list[tuple[int, ActivityError]] = []
        for position, media in enumerate(req.media):
            try:
                record = await workflow.execute_activity(
                    ARCHIVE_MEDIA,
                    ArchiveMediaInput(message_id=req.message_id, timestamp=req.timestamp,
                                      contact_segment=req.contact.path_segment(),
                                      position=position, media=media),
                    result_type=MediaRecord,
                    start_to_close_timeout=timedelta(seconds=opts.attempt_timeout),
                    heartbeat_timeout=timedelta(seconds=opts.heartbeat_timeout),
                    retry_policy=media_retry,
                )
            except ActivityError as err:
                failures.append((position, err))
                record = MediaRecord(media_id=media.media_id, position=position, kind=media.kind,
                                     status="failed", provider_sha256=media.provider_sha256,
                                     mime_type=media.mime_type, filename=media.filename)
            records.append(record)

        status = "failed" if failures else "archived"
        # The message is recorded either way: its text and metadata are archived even when a media
        # item could not be, and the media row says "failed" rather than pretending.
        await workflow.execute_activity(
            WRITE_RECORDS, WriteRecordsInput(request=req, media=records, archive_status=status),
            start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY,
        )
        if failures:
            info = workflow.info()
            for position, err in failures:
                cause = err.cause
                await workflow.execute_activity(
                    RECORD_CRITICAL_FAILURE,
                    CriticalFailureInput(
                        message_id=req.message_id, stage="archive_media",
                        media_id=req.media[position].media_id, workflow_id=info.workflow_id,
                        run_id=info.run_id,
                        retry_state=err.retry_state.name if err.retry_state else None,
                        last_error_type=getattr(cause, "type", None) or type(cause).__name__,
                        last_error=str(cause) if cause else str(err),
                    ),
                    start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY,
                )
            workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("failed")])
            raise ApplicationError(
                f"media of {req.message_id} could not be archived: {failures[0][1].cause}",
                type="ArchiveFailed", non_retryable=True,
            )
        workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("archived")])
        return ArchiveResult(message_id=req.message_id, status="archived", media=records)
