"""LedgerCheckpoint: started hourly by a Schedule; signs the ledger's tree head."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from wa_archive.names import WRITE_CHECKPOINT
    from workflows.retries import CHECKPOINT_RETRY, LEDGER_RUN_HEARTBEAT


@workflow.defn
class LedgerCheckpoint:
    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(
            WRITE_CHECKPOINT, result_type=int, start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=LEDGER_RUN_HEARTBEAT, retry_policy=CHECKPOINT_RETRY)
