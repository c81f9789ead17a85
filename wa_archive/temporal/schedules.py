"""Temporal Schedules of the archive, created or updated idempotently (`wa-archive schedules apply`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from wa_archive import names
from wa_archive.config import Settings
from wa_archive.integrity import sequencing
from wa_archive.models import DispositionInput, LedgerIntegrateInput, ReconcileInput, RetrievalTestInput
from wa_archive.names import (
    CHECKPOINT_SCHEDULE_ID,
    DISPOSITION_SCHEDULE_ID,
    RECONCILIATION_SCHEDULE_ID,
    RETRIEVAL_SCHEDULE_ID,
)


def _schedule(settings: Settings, workflow: str, arg: object, workflow_id: str, spec: ScheduleSpec) -> Schedule:
    """A schedule starting one workflow, skipping a start while the previous run is still going."""
    action = (ScheduleActionStartWorkflow(workflow, arg, id=workflow_id, task_queue=settings.task_queue)
              if arg is not None else
              ScheduleActionStartWorkflow(workflow, id=workflow_id, task_queue=settings.task_queue))
    return Schedule(action=action, spec=spec, policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP))


def _cron_utc(cron: str) -> ScheduleSpec:
    return ScheduleSpec(cron_expressions=[cron], time_zone_name="UTC")


def retrieval_schedule(settings: Settings) -> Schedule:
    return _schedule(settings, "RetrievalTest", RetrievalTestInput(sample_size=settings.retrieval_sample),
                     "retrieval-test", _cron_utc(settings.retrieval_cron))


def checkpoint_schedule(settings: Settings) -> Schedule:
    return _schedule(settings, "LedgerCheckpoint", None, "ledger-checkpoint", ScheduleSpec(
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.ledger_checkpoint_every))]))


def disposition_schedule(settings: Settings) -> Schedule:
    return _schedule(settings, "Disposition", DispositionInput(batch=settings.disposition_batch),
                     "disposition", _cron_utc(settings.disposition_cron))


def reconciliation_schedule(settings: Settings) -> Schedule:
    """Reconciles the previous UTC day (the input names no date)."""
    return _schedule(settings, "Reconciliation", ReconcileInput(), "reconciliation",
                     _cron_utc(settings.reconcile_cron))

def ledger_integrate_schedule(settings: Settings) -> Schedule:
    """Numbers the ledger's leaf candidates into the log (integrity/sequencing.py): a run every few
    minutes that integrates every WA_ARCHIVE_LEDGER_INTEGRATE_EVERY seconds until past the next start.
    That start waits for it (overlap: buffer one) and follows as it ends, so runs follow one another
    with no gap and never overlap."""
    every = settings.ledger_integrate_every
    task = LedgerIntegrateInput(every=every, run_for=sequencing.run_for(every))
    action = ScheduleActionStartWorkflow(
        "LedgerIntegrate", task, id="ledger-integrate", task_queue=settings.task_queue,
        execution_timeout=timedelta(seconds=task.run_for + sequencing.RUN_OVERTIME_SECONDS))
    return Schedule(action=action, spec=ScheduleSpec(
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=sequencing.run_span(every)))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE))


async def start_integrating(client: Client) -> None:
    """A run of the integrator now, not at its Schedule's next start minutes away (after the run still
    going, if one is: the Schedule buffers the start)."""
    await client.get_schedule_handle(names.LEDGER_INTEGRATE_SCHEDULE_ID).trigger()


def redrive_schedule(settings: Settings) -> Schedule:
    """Hands over deliveries stored but never handed to Temporal (archive/redrive.py)."""
    return _schedule(settings, "Redrive", None, "redrive", _cron_utc(settings.redrive_cron))


def capture_health_schedule(settings: Settings) -> Schedule:
    return _schedule(settings, "CaptureHealth", None, "capture-health", ScheduleSpec(
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.silence_check_every))]))


async def apply_capture_health_schedule(client: Client, settings: Settings) -> str:
    """The silence check's schedule while WA_ARCHIVE_SILENCE_ALERT_MINUTES is set; deleted when it is not."""
    handle = client.get_schedule_handle(names.CAPTURE_HEALTH_SCHEDULE_ID)
    if settings.silence_alert_minutes is None:
        try:
            await handle.delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return f"skipped {names.CAPTURE_HEALTH_SCHEDULE_ID} (WA_ARCHIVE_SILENCE_ALERT_MINUTES is not set)"
        return f"deleted {names.CAPTURE_HEALTH_SCHEDULE_ID} (WA_ARCHIVE_SILENCE_ALERT_MINUTES is not set)"
    schedule = capture_health_schedule(settings)
    what = f"every {settings.silence_check_every:g} s"
    try:
        await client.create_schedule(names.CAPTURE_HEALTH_SCHEDULE_ID, schedule)
        return f"created {names.CAPTURE_HEALTH_SCHEDULE_ID} ({what})"
    except ScheduleAlreadyRunningError:
        await handle.update(_replaced_by(schedule))
        return f"updated {names.CAPTURE_HEALTH_SCHEDULE_ID} ({what})"


def _replaced_by(schedule: Schedule) -> Callable[[ScheduleUpdateInput], ScheduleUpdate]:
    """An updater that replaces the existing schedule with this one, whatever it was."""
    return lambda _: ScheduleUpdate(schedule=schedule)


async def apply_schedules(client: Client, settings: Settings) -> list[str]:
    """Create each schedule, or bring an existing one up to date; returns what was done."""
    done = []
    for schedule_id, schedule, what in (
        (RETRIEVAL_SCHEDULE_ID, retrieval_schedule(settings), f"{settings.retrieval_cron} UTC"),
        (CHECKPOINT_SCHEDULE_ID, checkpoint_schedule(settings), f"every {settings.ledger_checkpoint_every:g} s"),
        (DISPOSITION_SCHEDULE_ID, disposition_schedule(settings), f"{settings.disposition_cron} UTC"),
        (RECONCILIATION_SCHEDULE_ID, reconciliation_schedule(settings), f"{settings.reconcile_cron} UTC"),
        (names.REDRIVE_SCHEDULE_ID, redrive_schedule(settings), f"{settings.redrive_cron} UTC"),
        (names.LEDGER_INTEGRATE_SCHEDULE_ID, ledger_integrate_schedule(settings),
         f"integrating every {settings.ledger_integrate_every:g} s,"
         f" a run every {sequencing.run_span(settings.ledger_integrate_every):g} s"),
    ):
        try:
            await client.create_schedule(schedule_id, schedule)
            done.append(f"created {schedule_id} ({what})")
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(schedule_id).update(_replaced_by(schedule))
            done.append(f"updated {schedule_id} ({what})")
        if schedule_id == names.LEDGER_INTEGRATE_SCHEDULE_ID:
            await start_integrating(client)
    done.append(await apply_capture_health_schedule(client, settings))
    return done
