"""ExportBundle: one export as a durable, observable job (progress is the activity's heartbeat)."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from wa_archive.models import ExportInput, ExportOutput
    from wa_archive.names import EXPORT_BUNDLE
    from workflows.retries import EXPORT_RETRY


@workflow.defn
class ExportBundle:
    @workflow.run
    async def run(self, inp: ExportInput) -> ExportOutput:
        # No document or size cap: the only bound is a generous time per attempt, and a lost
        # worker is noticed within a minute through the heartbeat.
        return await workflow.execute_activity(
            EXPORT_BUNDLE, inp, result_type=ExportOutput,
            start_to_close_timeout=timedelta(hours=12), heartbeat_timeout=timedelta(minutes=1),
            retry_policy=EXPORT_RETRY)
