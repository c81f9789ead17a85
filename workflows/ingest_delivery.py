"""IngestDelivery: one durable start per webhook delivery, fanned out to per-message workflows.

The webhook answers Meta as soon as this workflow is started, which keeps a 1,000-update
delivery fast to acknowledge; the fan-out then runs here with retries.
"""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from wa_archive.models import FanOutResult, IngestDeliveryInput
    from wa_archive.names import FAN_OUT_DELIVERY
    from workflows.retries import FAN_OUT_RETRY


@workflow.defn
class IngestDelivery:
    @workflow.run
    async def run(self, inp: IngestDeliveryInput) -> FanOutResult:
        return await workflow.execute_activity(
            FAN_OUT_DELIVERY, inp, result_type=FanOutResult,
            start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=timedelta(seconds=60),
            retry_policy=FAN_OUT_RETRY,
        )
