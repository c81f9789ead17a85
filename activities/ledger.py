"""write_checkpoint: sign the ledger's current tree head and keep it write-once in the store;
integrate_ledger: number the leaf candidates written since the last run into the log;
integrate_ledger_until: do so every interval until a time (one run of the integrator's Schedule)."""

import asyncpg
import structlog
from temporalio import activity

from activities.heartbeats import beating
from wa_archive.integrity import ledger, sequencing
from wa_archive.models import IntegrateUntil, IntegrationRun
from wa_archive.names import INTEGRATE_LEDGER, INTEGRATE_LEDGER_UNTIL, WRITE_CHECKPOINT
from wa_archive.storage import ObjectStore

log = structlog.get_logger("wa_archive.ledger")


class LedgerActivities:
    def __init__(self, pool: asyncpg.Pool, store: ObjectStore, signer: ledger.Signer) -> None:
        self.pool = pool
        self.store = store
        self.signer = signer

    @activity.defn(name=WRITE_CHECKPOINT)
    async def write_checkpoint(self) -> int:
        """The tree size now checkpointed (0 when nothing was added since the last one)."""
        async with beating():
            written = await ledger.write_checkpoint(self.pool, self.store, self.signer)
        if written:
            log.info("ledger_checkpoint", tree_size=written["tree_size"], root=written["root_hash"])
        return written["tree_size"] if written else 0

    @activity.defn(name=INTEGRATE_LEDGER)
    async def integrate_ledger(self) -> int:
        """How many leaves this run integrated (0 when no candidate was waiting)."""
        async with beating():
            return await sequencing.integrate(self.pool)

    @activity.defn(name=INTEGRATE_LEDGER_UNTIL)
    async def integrate_ledger_until(self, task: IntegrateUntil) -> IntegrationRun:
        """Integrate every `task.every` seconds until `task.until`; it returns early when its worker shuts
        down (the workflow then asks another worker for the rest)."""
        async with beating():
            added, stopping = await sequencing.integrate_until(self.pool, task.until, task.every,
                                                               activity.wait_for_worker_shutdown)
        return IntegrationRun(added=added, worker_stopping=stopping)
