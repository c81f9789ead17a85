"""Disposition: started daily by a Schedule (or `wa-archive disposition run`); removes what is past
retention and not on hold, in batches, then carries out erasure requests whose date has come."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from wa_archive.models import DispositionBatch, DispositionInput, DispositionReport
    from wa_archive.names import DISPOSE_BATCH, PREPARE_DISPOSITION, SETTLE_ERASURES
    from workflows.retries import DISPOSITION_RETRY

MAX_BATCHES = 500  # a run's history stays small; the next scheduled run continues


@workflow.defn
class Disposition:
    def __init__(self) -> None:
        self.report = DispositionReport()

    @workflow.query
    def progress(self) -> DispositionReport:
        return self.report

    @workflow.run
    async def run(self, inp: DispositionInput) -> DispositionReport:
        await workflow.execute_activity(PREPARE_DISPOSITION, result_type=int,
                                        start_to_close_timeout=timedelta(hours=1), retry_policy=DISPOSITION_RETRY)
        for _ in range(MAX_BATCHES):
            batch = await workflow.execute_activity(
                DISPOSE_BATCH, inp, result_type=DispositionBatch, start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(minutes=5), retry_policy=DISPOSITION_RETRY)
            self.report.removed += batch.removed
            self.report.bytes += batch.bytes
            self.report.deferred += batch.deferred
            if not batch.more:
                break
        if inp.phone is None:
            self.report.erasures_completed = await workflow.execute_activity(
                SETTLE_ERASURES, result_type=int, start_to_close_timeout=timedelta(hours=1),
                retry_policy=DISPOSITION_RETRY)
        return self.report
