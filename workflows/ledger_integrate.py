"""LedgerIntegrate: numbers the ledger's leaf candidates into the log.

Its Schedule starts a run every few minutes (integrity/sequencing.py, run_span), with the interval and
the length of the run as input: the run integrates every interval until then, in one long activity
that heartbeats. When that activity ends early (its worker shutting down) or fails, another takes
over for the rest of the run. A run started without input (by hand, or by a Schedule applied before
runs were long) integrates once, as every run used to.
"""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from wa_archive.integrity.sequencing import RUN_MARGIN_SECONDS
    from wa_archive.models import IntegrateUntil, IntegrationRun, LedgerIntegrateInput
    from wa_archive.names import INTEGRATE_LEDGER, INTEGRATE_LEDGER_UNTIL
    from workflows.retries import INTEGRATE_RETRY, INTEGRATE_UNTIL_RETRY, LEDGER_RUN_HEARTBEAT


@workflow.defn
class LedgerIntegrate:
    @workflow.run
    async def run(self, task: LedgerIntegrateInput | None = None) -> int:
        if task is None:
            return await workflow.execute_activity(
                INTEGRATE_LEDGER, result_type=int, start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=LEDGER_RUN_HEARTBEAT, retry_policy=INTEGRATE_RETRY)
        every = timedelta(seconds=task.every)
        until = workflow.now() + timedelta(seconds=task.run_for)
        added = 0
        while True:
            done = await workflow.execute_activity(
                INTEGRATE_LEDGER_UNTIL, IntegrateUntil(every=task.every, until=until), result_type=IntegrationRun,
                schedule_to_close_timeout=until - workflow.now() + timedelta(seconds=RUN_MARGIN_SECONDS),
                heartbeat_timeout=LEDGER_RUN_HEARTBEAT, retry_policy=INTEGRATE_UNTIL_RETRY)
            added += done.added
            if not another_activity(done, until - workflow.now(), every):
                return added


def another_activity(done: IntegrationRun, left: timedelta, every: timedelta) -> bool:
    """Whether a run asks for another activity once one has ended: only when it ended for its worker
    shutting down, and more than an interval of the run is left. An activity that ended by itself found
    the run over by its worker's clock; one running ahead of the workflow's would end every further
    activity at once, so the next run, already waiting, takes over instead."""
    return done.worker_stopping and left > every
