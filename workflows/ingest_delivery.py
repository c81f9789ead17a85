"""IngestDelivery: one durable start per webhook delivery, fanned out to per-message workflows.

The webhook answers Meta as soon as this workflow is started, which keeps a 1,000-update
delivery fast to acknowledge; the fan-out then runs here with retries.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from wa_archive.models import FanOutResult, IngestDeliveryInput
    from wa_archive.names import FAN_OUT_DELIVERY


@workflow.defn
class IngestDelivery:
    @workflow.run
    async def run(self, inp: IngestDeliveryInput) -> FanOutResult:
        # Unlimited retries: an acknowledged delivery must reach its messages, however long
        # Postgres or Temporal take to come back.
        return await workflow.execute_activity(
            FAN_OUT_DELIVERY, inp, result_type=FanOutResult,
            start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1),
                                     maximum_interval=timedelta(seconds=30)),
        )
