"""Temporal Schedules of the archive, created or updated idempotently (`wa-archive schedules apply`)."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)

from wa_archive.config import Settings
from wa_archive.models import RetrievalTestInput
from wa_archive.names import RETRIEVAL_SCHEDULE_ID


def retrieval_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "RetrievalTest", RetrievalTestInput(sample_size=settings.retrieval_sample),
            id="retrieval-test", task_queue=settings.task_queue),
        spec=ScheduleSpec(cron_expressions=[settings.retrieval_cron], time_zone_name="UTC"),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def apply_schedules(client: Client, settings: Settings) -> list[str]:
    """Create each schedule, or bring an existing one up to date; returns what was done."""
    schedule = retrieval_schedule(settings)
    try:
        await client.create_schedule(RETRIEVAL_SCHEDULE_ID, schedule)
        return [f"created {RETRIEVAL_SCHEDULE_ID} ({settings.retrieval_cron} UTC)"]
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(RETRIEVAL_SCHEDULE_ID).update(
            lambda _: ScheduleUpdate(schedule=schedule))
        return [f"updated {RETRIEVAL_SCHEDULE_ID} ({settings.retrieval_cron} UTC)"]
