"""CaptureHealth: started every few minutes by a Schedule; notes silent business numbers.

The run ends red while any number is silent, so the Schedule's recent runs in the Temporal UI show
the silence for as long as it lasts; the CRITICAL log line and the episode row are written once, by
the check that found it.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from wa_archive.health.capture_report import CaptureCheckInput, CaptureHealthReport
    from wa_archive.names import CHECK_CAPTURE_HEALTH
    from workflows.retries import DB_RETRY


@workflow.defn
class CaptureHealth:
    @workflow.run
    async def run(self) -> CaptureHealthReport:
        report = await workflow.execute_activity(
            CHECK_CAPTURE_HEALTH, CaptureCheckInput(now=workflow.now()), result_type=CaptureHealthReport,
            start_to_close_timeout=timedelta(minutes=2), retry_policy=DB_RETRY)
        if report.silent:
            raise ApplicationError(
                f"{len(report.silent)} business number(s) silent past {report.alert_minutes:g} minutes of active"
                f" hours: {', '.join(report.silent)} (wa-archive capture-health)", type="CaptureSilence",
                non_retryable=True)
        return report
