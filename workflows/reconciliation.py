"""Reconciliation: started daily by a Schedule (and by `wa-archive reconcile run`); proves a UTC day complete.

A checkpoint is signed first so the report names the ledger state it was made against; another
after the report covers the report's own leaf. A red report ends the workflow red.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from wa_archive.models import ReconcileDayInput, ReconcileInput, ReconcileResult
    from wa_archive.names import RECONCILE_DAY, WRITE_CHECKPOINT
    from workflows.retries import CHECKPOINT_RETRY, RECONCILE_RETRY


@workflow.defn
class Reconciliation:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileResult:
        day = inp.date or (workflow.now() - timedelta(days=1)).date().isoformat()
        await workflow.execute_activity(WRITE_CHECKPOINT, result_type=int, start_to_close_timeout=timedelta(minutes=30),
                                        retry_policy=CHECKPOINT_RETRY)
        info = workflow.info()
        result = await workflow.execute_activity(
            RECONCILE_DAY, ReconcileDayInput(date=day, workflow_id=info.workflow_id, run_id=info.run_id),
            result_type=ReconcileResult, start_to_close_timeout=timedelta(hours=1),
            retry_policy=RECONCILE_RETRY)
        await workflow.execute_activity(WRITE_CHECKPOINT, result_type=int, start_to_close_timeout=timedelta(minutes=30),
                                        retry_policy=CHECKPOINT_RETRY)
        if result.status == "red":
            raise ApplicationError(
                f"reconciliation of {day} (version {result.version}) is red: " + "; ".join(result.gaps[:10]),
                result.model_dump(mode="json"), type="ReconciliationGap", non_retryable=True)
        return result
