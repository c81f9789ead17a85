"""LedgerIntegrate: started every WA_ARCHIVE_LEDGER_INTEGRATE_EVERY seconds by a Schedule (a run still
going skips the next start); numbers the ledger's leaf candidates into the log."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from wa_archive.names import INTEGRATE_LEDGER
    from workflows.retries import INTEGRATE_RETRY, LEDGER_RUN_HEARTBEAT


@workflow.defn
class LedgerIntegrate:
    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(
            INTEGRATE_LEDGER, result_type=int, start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=LEDGER_RUN_HEARTBEAT, retry_policy=INTEGRATE_RETRY)
