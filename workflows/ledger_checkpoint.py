"""LedgerCheckpoint: started hourly by a Schedule; signs the ledger's tree head."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from wa_archive.names import WRITE_CHECKPOINT


@workflow.defn
class LedgerCheckpoint:
    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(
            WRITE_CHECKPOINT, result_type=int, start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=10))
