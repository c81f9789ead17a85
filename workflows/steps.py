"""Workflow steps shared by ArchiveMessage and OutboundMessage: media with the bounded retry rule,
and the critical failure record. Deterministic code only; the work happens in activities."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from wa_archive.errors import NON_RETRYABLE
    from wa_archive.archive.media_types import normalize_mime
    from wa_archive.models import ArchiveMediaInput, ArchiveOptions, CriticalFailureInput, MediaRecord
    from wa_archive.names import ARCHIVE_ENCRYPTED_MEDIA, ARCHIVE_LINK_MEDIA, ARCHIVE_MEDIA, RECORD_CRITICAL_FAILURE

# Postgres writes retry until Postgres is back: failing them would lose nothing but would turn a
# short database outage into a pile of red workflows. The media step has the bounded policy.
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
DB_TIMEOUT = timedelta(seconds=60)


def media_retry(opts: ArchiveOptions) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=opts.retry_initial_interval),
        backoff_coefficient=opts.retry_backoff,
        maximum_interval=timedelta(seconds=max(opts.retry_max_interval, opts.retry_initial_interval)),
        maximum_attempts=opts.retry_max_attempts,
        non_retryable_error_types=NON_RETRYABLE,
    )


async def archive_media_items(
    items: list[ArchiveMediaInput], opts: ArchiveOptions
) -> tuple[list[MediaRecord], list[tuple[ArchiveMediaInput, ActivityError]]]:
    """Archive each item by the activity its source needs; failures are returned."""
    records: list[MediaRecord] = []
    failures: list[tuple[ArchiveMediaInput, ActivityError]] = []
    for item in items:
        try:
            record = await workflow.execute_activity(
                _activity_for(item),
                item, result_type=MediaRecord,
                start_to_close_timeout=timedelta(seconds=opts.attempt_timeout),
                heartbeat_timeout=timedelta(seconds=opts.heartbeat_timeout),
                retry_policy=media_retry(opts),
            )
        except ActivityError as err:
            failures.append((item, err))
            media = item.media
            record = MediaRecord(media_id=media.media_id, position=item.position,
                                 kind=media.kind, status="failed",
                                 provider_sha256=media.provider_sha256, mime_type=normalize_mime(media.mime_type),
                                 declared_mime_type=media.mime_type, filename=media.filename)
        records.append(record)
    return records, failures


def _activity_for(item: ArchiveMediaInput) -> str:
    """Graph media id, a sender's link, or WhatsApp's encrypted media (WhatsApp-Web sources)."""
    if item.media.encrypted is not None:
        return ARCHIVE_ENCRYPTED_MEDIA
    return ARCHIVE_LINK_MEDIA if item.media.link else ARCHIVE_MEDIA


async def record_failure(message_id: str, stage: str, media_id: str | None, err: ActivityError) -> None:
    info = workflow.info()
    cause = err.cause
    await workflow.execute_activity(
        RECORD_CRITICAL_FAILURE,
        CriticalFailureInput(
            message_id=message_id, stage=stage, media_id=media_id, workflow_id=info.workflow_id,
            run_id=info.run_id, retry_state=err.retry_state.name if err.retry_state else None,
            last_error_type=getattr(cause, "type", None) or type(cause).__name__,
            last_error=str(cause) if cause else str(err),
        ),
        start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY,
    )
