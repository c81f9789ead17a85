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
    from wa_archive.models import IntegrateUntil, LedgerIntegrateInput
    from wa_archive.names import INTEGRATE_LEDGER, INTEGRATE_LEDGER_UNTIL
    from workflows.retries import INTEGRATE_RETRY, INTEGRATE_UNTIL_RETRY, LEDGER_RUN_HEARTBEAT

# Beyond the end of the run, how long an attempt may still take (its last integration, a statement slow
# to return) before it is given up.
MARGIN = timedelta(minutes=1)


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
        # Not to the last moment: a worker whose clock runs ahead returns early, and the few seconds it
        # leaves are not worth another activity (the next run is already waiting).
        while until - workflow.now() > every:
            added += await workflow.execute_activity(
                INTEGRATE_LEDGER_UNTIL, IntegrateUntil(every=task.every, until=until), result_type=int,
                schedule_to_close_timeout=until - workflow.now() + MARGIN,
                heartbeat_timeout=LEDGER_RUN_HEARTBEAT, retry_policy=INTEGRATE_UNTIL_RETRY)
        return added
