"""RetrievalTest: read a sample of the archive back, as an auditor would need it, and prove it intact.

Started monthly by a Temporal Schedule (and on demand). Objects in an archive storage tier are
restored first; the workflow waits for the restore with a durable timer rather than failing.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from wa_archive.models import (
        RetrievalBatch,
        RetrievalCheck,
        RetrievalReport,
        RetrievalTestInput,
    )
    from wa_archive.names import CHECK_OBJECTS, REQUEST_RESTORE, SAMPLE_MEDIA, SAVE_RETRIEVAL_REPORT
    from workflows.retries import DB_RETRY, RETRIEVAL_RETRY

BATCH = 20


@workflow.defn
class RetrievalTest:
    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    @workflow.query
    def progress(self) -> dict:
        return {"done": self.done, "total": self.total}

    @workflow.run
    async def run(self, inp: RetrievalTestInput) -> RetrievalReport:
        started = workflow.now()
        sample = await workflow.execute_activity(
            SAMPLE_MEDIA, inp, result_type=RetrievalBatch, start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RETRIEVAL_RETRY)
        self.total = len(sample.items)
        results: dict[str, RetrievalCheck] = {}
        pending = list(sample.items)
        while pending:
            waiting = []
            for i in range(0, len(pending), BATCH):
                checks = await workflow.execute_activity(
                    CHECK_OBJECTS, RetrievalBatch(items=pending[i : i + BATCH]), result_type=list[RetrievalCheck],
                    start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=RETRIEVAL_RETRY)
                for check in checks:
                    if check.status == "restore_needed":
                        waiting.append(check.item)
                    else:
                        results[check.item.archive_id] = check
                        self.done += 1
            if waiting:
                # Archive-tier objects: ask for a restore, then look again after a durable timer.
                await workflow.execute_activity(
                    REQUEST_RESTORE, RetrievalBatch(items=waiting), start_to_close_timeout=timedelta(minutes=5),
                    retry_policy=RETRIEVAL_RETRY)
                await asyncio.sleep(inp.restore_poll_seconds)
            pending = waiting
        checks = [results[item.archive_id] for item in sample.items]
        failed = [c for c in checks if c.status == "failed"]
        times = [c.read_ms for c in checks if c.read_ms is not None]
        info = workflow.info()
        report = RetrievalReport(
            workflow_id=info.workflow_id, run_id=info.run_id, started_at=started, finished_at=workflow.now(),
            sample_size=len(checks), passed=len(checks) - len(failed), failed=len(failed),
            slowest_ms=max(times) if times else None, checks=checks)
        await workflow.execute_activity(
            SAVE_RETRIEVAL_REPORT, report, start_to_close_timeout=timedelta(minutes=1),
            retry_policy=DB_RETRY)  # a Postgres write: retried until Postgres is back
        if failed:
            raise ApplicationError(
                f"retrieval test: {len(failed)} of {len(checks)} objects failed: "
                + "; ".join(f"{c.item.message_id}: {c.problem}" for c in failed[:10]),
                type="RetrievalTestFailed", non_retryable=True)
        return report
