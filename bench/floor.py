"""The Temporal floor for the end-to-end benchmark: a workflow with no-op activities only.

Run as a separate worker process (`python -m bench.floor ADDRESS TASK_QUEUE`) so it pays the same
process and network costs as the archive worker.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

# Per message the archive runs IngestDelivery (1 activity) and ArchiveMessage (2 activities).
ACTIVITIES_PER_MESSAGE = 3


@activity.defn
async def noop(n: int) -> int:
    return n


@workflow.defn
class FloorWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        for i in range(ACTIVITIES_PER_MESSAGE):
            await workflow.execute_activity(noop, i, start_to_close_timeout=timedelta(seconds=30))
        return n


async def main(address: str, task_queue: str) -> None:
    # Imported here, not at the top: the sandbox re-imports this module and must not load the codec's crypto.
    from wa_archive.config import load_settings
    from wa_archive.temporal.client import data_converter

    # The bench's own converter (WA_ARCHIVE_PAYLOAD_KEYS in the environment): the floor pays the codec too.
    client = await Client.connect(address, data_converter=data_converter(load_settings()))
    async with Worker(client, task_queue=task_queue, workflows=[FloorWorkflow], activities=[noop]):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
