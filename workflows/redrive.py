"""Redrive: started every minute by a Schedule; hands over deliveries stored but never handed to Temporal.

The report (the workflow's result) names each delivery re-driven by its SHA-256; the run is also a
`redrive_runs` row and, when it handed anything over, a log line.
"""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from wa_archive.models import RedriveReport
    from wa_archive.names import REDRIVE_DELIVERIES
    from workflows.retries import DB_RETRY


@workflow.defn
class Redrive:
    @workflow.run
    async def run(self) -> RedriveReport:
        return await workflow.execute_activity(
            REDRIVE_DELIVERIES, result_type=RedriveReport, start_to_close_timeout=timedelta(minutes=5),
            retry_policy=DB_RETRY)
