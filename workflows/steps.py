"""Workflow steps shared by ArchiveMessage and OutboundMessage: media with the bounded retry rule,
writing the record, the critical failure record, and how a message workflow ends. Deterministic code only; the work
happens in activities."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from wa_archive.archive.media_types import normalize_mime
    from wa_archive.models import (
        ArchiveMediaInput,
        ArchiveOptions,
        ArchiveResult,
        CriticalFailureInput,
        MediaRecord,
    )
    from wa_archive.names import (
        ARCHIVE_ENCRYPTED_MEDIA,
        ARCHIVE_LINK_MEDIA,
        ARCHIVE_MEDIA,
        ARCHIVE_STATUS,
        RECORD_CRITICAL_FAILURE,
    )
    from workflows.retries import DB_RETRY, media_retry

DB_TIMEOUT = timedelta(seconds=60)


@dataclass
class MediaOutcome:
    """A record per media item (an item that could not be archived is recorded as failed) and the
    error of each such item."""

    records: list[MediaRecord]
    failures: list[tuple[ArchiveMediaInput, ActivityError]]

    @property
    def status(self) -> Literal["archived", "failed"]:
        return "failed" if self.failures else "archived"


async def archive_media_items(items: list[ArchiveMediaInput], opts: ArchiveOptions) -> MediaOutcome:
    """Archive each item by the activity its source needs; failures are returned."""
    outcome = MediaOutcome(records=[], failures=[])
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
            outcome.failures.append((item, err))
            media = item.media
            record = MediaRecord(media_id=media.media_id, position=item.position,
                                 kind=media.kind, status="failed",
                                 provider_sha256=media.provider_sha256, mime_type=normalize_mime(media.mime_type),
                                 declared_mime_type=media.mime_type, filename=media.filename)
        outcome.records.append(record)
    return outcome


async def write_record(activity: str, message_id: str, inp: BaseModel) -> None:
    """Run the activity that checks or records the message. Database trouble is retried until it
    passes, so it fails only when it refuses the message as not what the archive stored
    (UnverifiedMessage): that is kept as a critical failure, with nothing recorded, and the workflow
    ends red."""
    try:
        await workflow.execute_activity(activity, inp, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
    except ActivityError as err:
        await record_failure(message_id, activity, None, err)
        workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set("failed")])
        raise ApplicationError(f"{message_id} was not recorded: {err.cause}", type="RecordRefused",
                               non_retryable=True) from err


def _activity_for(item: ArchiveMediaInput) -> str:
    """Graph media id, a sender's link, or WhatsApp's encrypted media (WhatsApp-Web sources)."""
    if item.media.encrypted is not None:
        return ARCHIVE_ENCRYPTED_MEDIA
    return ARCHIVE_LINK_MEDIA if item.media.link else ARCHIVE_MEDIA


async def record_failure(message_id: str, stage: str, media_id: str | None, err: ActivityError) -> None:
    """The critical failure row of a step whose retries are spent: which run, why it stopped, the last error."""
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


async def finish_message(message_id: str, media: MediaOutcome, *, name_first_cause: bool = True) -> ArchiveResult:
    """End a message workflow once its records are written: a critical failure row per media item that
    could not be archived, the ArchiveStatus search attribute, and a red, non-retryable end if any failed."""
    for item, err in media.failures:
        await record_failure(message_id, "archive_media", item.media.media_id, err)
    workflow.upsert_search_attributes([ARCHIVE_STATUS.value_set(media.status)])
    if media.failures:
        # OutboundMessage has always failed without the cause; the text is kept as operators know it.
        reason = f": {media.failures[0][1].cause}" if name_first_cause else ""
        raise ApplicationError(f"media of {message_id} could not be archived{reason}",
                               type="ArchiveFailed", non_retryable=True)
    return ArchiveResult(message_id=message_id, status="archived", media=media.records)
