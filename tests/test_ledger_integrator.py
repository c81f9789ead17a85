"""The ledger's integrator as its Schedule runs it (issue 16): one long run integrates every interval in
one activity (one workflow execution every few minutes instead of one a second), hands the rest of the
run to another worker when its worker stops, and `schedules apply` starts a run at once rather than at
the Schedule's next start, minutes away."""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
from temporalio.client import Client, ScheduleIntervalSpec, ScheduleOverlapPolicy, WorkflowHandle
from temporalio.service import RPCError

from tests.conftest import until_past, wait_until
from wa_archive.config import Settings
from wa_archive.integrity import ledger, sequencing
from wa_archive.models import IntegrationRun, LedgerIntegrateInput
from wa_archive.names import LEDGER_INTEGRATE_SCHEDULE_ID
from wa_archive.temporal.schedules import apply_schedules, ledger_integrate_schedule
from worker import build_worker, link_fetcher
from workflows.ledger_integrate import another_activity


async def _add(pool: asyncpg.Pool, n: int) -> list[str]:
    """n records' leaf candidates, committed; their record ids."""
    ids = [f"integrator-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    async with pool.acquire() as conn, conn.transaction():
        for record_id in ids:
            await ledger.append(conn, "access", record_id, "ab" * 32)
    return ids


async def _integrated(pool: asyncpg.Pool, ids: list[str]) -> bool:
    return await pool.fetchval("SELECT count(*) FROM ledger_leaves WHERE record_id = ANY($1::text[])", ids) == len(ids)


async def _activities(handle: WorkflowHandle) -> dict[str, int]:
    """How many activities the run scheduled, and how each that ended did."""
    counts = {"scheduled": 0, "completed": 0, "failed": 0, "timed_out": 0}
    for event in (await handle.fetch_history()).events:
        for kind in counts:
            if event.HasField(f"activity_task_{kind}_event_attributes"):
                counts[kind] += 1
    return counts


def test_the_schedule_starts_a_run_every_few_minutes_that_lasts_past_the_next_start():
    settings = Settings(_env_file=None, task_queue="q", ledger_integrate_every=1)
    schedule = ledger_integrate_schedule(settings)
    assert schedule.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE  # the next start waits, then follows
    [interval] = schedule.spec.intervals
    assert interval == ScheduleIntervalSpec(every=timedelta(seconds=sequencing.RUN_SECONDS))
    assert schedule.action.args == [LedgerIntegrateInput(every=1, run_for=sequencing.RUN_SECONDS + 2)]
    # A run that never gets going (its task queue polled by no worker now) gives way to the next.
    assert schedule.action.execution_timeout == timedelta(seconds=sequencing.RUN_SECONDS + 2 + 180)
    slow = ledger_integrate_schedule(Settings(_env_file=None, task_queue="q", ledger_integrate_every=120))
    assert slow.spec.intervals[0].every == timedelta(seconds=1200)  # ten intervals a run at least
    assert slow.action.args == [LedgerIntegrateInput(every=120, run_for=1440)]


async def test_one_run_integrates_every_interval_in_one_activity(stack):
    handle = await stack.client.start_workflow(
        "LedgerIntegrate", LedgerIntegrateInput(every=0.5, run_for=4), id=f"integrate-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue)
    added = []
    for _ in range(3):  # records committed while the run goes are integrated within an interval or so
        ids = await _add(stack.pool, 3)
        await wait_until(lambda ids=ids: _integrated(stack.pool, ids), "the run integrated them", timeout=10)
        added += ids
    assert await handle.result() == len(added)  # one activity: its clock, not the workflow's, ended the run
    assert await _activities(handle) == {"scheduled": 1, "completed": 1, "failed": 0, "timed_out": 0}


def test_a_run_asks_for_another_activity_only_after_a_worker_stopped_and_with_time_left():
    """A worker clock 15 s ahead of the workflow's used to make the run start activity after activity
    (hundreds, each ending at once by its own clock) for those 15 s."""
    second = timedelta(seconds=1)
    assert another_activity(IntegrationRun(added=3, worker_stopping=True), 100 * second, second)
    assert not another_activity(IntegrationRun(added=3, worker_stopping=False), 15 * second, second)  # clock ahead
    assert not another_activity(IntegrationRun(added=0, worker_stopping=True), second / 2, second)


async def test_when_its_worker_stops_another_worker_takes_the_rest_of_the_run(stack_factory, client: Client):
    """A worker shut down (a deploy) ends the run's activity at once, completed, not failed or timed out;
    the run then asks for another, which the next worker takes."""
    stack = await stack_factory(run_worker=False)
    links = link_fetcher(stack.settings)
    handle = await client.start_workflow(
        "LedgerIntegrate", LedgerIntegrateInput(every=0.5, run_for=60), id=f"integrate-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.task_queue)
    try:
        async with build_worker(client, stack.settings, stack.pool, stack.store, stack.http, links):
            ids = await _add(stack.pool, 2)
            await wait_until(lambda: _integrated(stack.pool, ids), "the first worker integrated", timeout=10)
        assert await _activities(handle) == {"scheduled": 1, "completed": 1, "failed": 0, "timed_out": 0}
        ids = await _add(stack.pool, 2)
        async with build_worker(client, stack.settings, stack.pool, stack.store, stack.http, links):
            await wait_until(lambda: _integrated(stack.pool, ids), "the second worker integrated", timeout=15)
            counts = await _activities(handle)
        assert counts["scheduled"] == 2 and counts["failed"] == counts["timed_out"] == 0
    finally:
        await handle.terminate("test over")
        await links.close()


async def test_schedules_apply_starts_integrating_at_once(stack):
    """The Schedule's first start is minutes away: `schedules apply` starts a run now, on creating it and
    on updating it (a run still going then is followed at once by the one it starts)."""
    schedule = stack.client.get_schedule_handle(LEDGER_INTEGRATE_SCHEDULE_ID)
    with contextlib.suppress(RPCError):  # an earlier test's Schedule names a task queue no worker polls now
        await schedule.delete()
    # Its natural starts fall on multiples of five minutes: far from one, integrating within seconds is the
    # start apply made.
    now = time.time()
    if sequencing.RUN_SECONDS - now % sequencing.RUN_SECONDS < 30:
        await until_past(datetime.fromtimestamp(now - now % sequencing.RUN_SECONDS + sequencing.RUN_SECONDS,
                                                timezone.utc))
    try:
        what = f"{LEDGER_INTEGRATE_SCHEDULE_ID} (integrating every 1 s, a run every 300 s)"
        assert f"created {what}" in await apply_schedules(stack.client, stack.settings)
        ids = await _add(stack.pool, 2)
        await wait_until(lambda: _integrated(stack.pool, ids), "integrated by the run apply started", timeout=15)
        assert f"updated {what}" in await apply_schedules(stack.client, stack.settings)
        assert len((await schedule.describe()).info.running_actions) == 1  # the new start waits for the run
    finally:
        for action in (await schedule.describe()).info.running_actions:
            await stack.client.get_workflow_handle(action.workflow_id, run_id=action.first_execution_run_id
                                                   ).terminate("test over")
        await schedule.delete()
