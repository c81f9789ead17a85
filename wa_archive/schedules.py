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

from datetime import timedelta

from temporalio.client import ScheduleIntervalSpec

from wa_archive.config import Settings
from wa_archive.models import DispositionInput, RetrievalTestInput
from wa_archive.names import CHECKPOINT_SCHEDULE_ID, DISPOSITION_SCHEDULE_ID, RETRIEVAL_SCHEDULE_ID


def retrieval_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "RetrievalTest", RetrievalTestInput(sample_size=settings.retrieval_sample),
            id="retrieval-test", task_queue=settings.task_queue),
        spec=ScheduleSpec(cron_expressions=[settings.retrieval_cron], time_zone_name="UTC"),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def checkpoint_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow("LedgerCheckpoint", id="ledger-checkpoint", task_queue=settings.task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.ledger_checkpoint_every))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def disposition_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "Disposition", DispositionInput(batch=settings.disposition_batch),
            id="disposition", task_queue=settings.task_queue),
        spec=ScheduleSpec(cron_expressions=[settings.disposition_cron], time_zone_name="UTC"),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def apply_schedules(client: Client, settings: Settings) -> list[str]:
    """Create each schedule, or bring an existing one up to date; returns what was done."""
    done = []
    for schedule_id, schedule, what in (
        (RETRIEVAL_SCHEDULE_ID, retrieval_schedule(settings), f"{settings.retrieval_cron} UTC"),
        (CHECKPOINT_SCHEDULE_ID, checkpoint_schedule(settings), f"every {settings.ledger_checkpoint_every:g} s"),
        (DISPOSITION_SCHEDULE_ID, disposition_schedule(settings), f"{settings.disposition_cron} UTC"),
    ):
        try:
            await client.create_schedule(schedule_id, schedule)
            done.append(f"created {schedule_id} ({what})")
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(schedule_id).update(lambda _, s=schedule: ScheduleUpdate(schedule=s))
            done.append(f"updated {schedule_id} ({what})")
    return done
