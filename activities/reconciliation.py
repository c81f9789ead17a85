"""reconcile_day: compute a UTC day's reconciliation, add Meta's counts, keep the report write-once."""

from datetime import date, datetime, timezone

import asyncpg
from temporalio import activity

from wa_archive.db import reconciliation as queries
from wa_archive.integrity import checkpoints, reconciliation
from wa_archive.models import ReconcileDayInput, ReconcileResult
from wa_archive.names import RECONCILE_DAY
from wa_archive.sources.meta.graph import GraphClient


class ReconciliationActivities:
    def __init__(self, pool: asyncpg.Pool, graph: GraphClient, deadlines: reconciliation.Deadlines,
                 tolerance: reconciliation.Tolerance, waba_id: str | None, ledger_key: bytes) -> None:
        self.pool = pool
        self.graph = graph
        self.deadlines = deadlines
        self.tolerance = tolerance
        self.waba_id = waba_id
        self.ledger_key = ledger_key  # the report names the latest checkpoint signed with it

    @activity.defn(name=RECONCILE_DAY)
    async def reconcile_day(self, inp: ReconcileDayInput) -> ReconcileResult:
        """The day's report, stored as its next version; red when any id did not resolve."""
        return await reconcile(self.pool, self.graph, reconciliation.parse_day(inp.date), deadlines=self.deadlines,
                               tolerance=self.tolerance, waba_id=self.waba_id, workflow_id=inp.workflow_id,
                               run_id=inp.run_id, ledger_key=self.ledger_key)


async def reconcile(pool: asyncpg.Pool, graph: GraphClient, day: date, *,
                    deadlines: reconciliation.Deadlines, tolerance: reconciliation.Tolerance, waba_id: str | None,
                    workflow_id: str | None, run_id: str | None, ledger_key: bytes) -> ReconcileResult:
    report = await reconciliation.compute(pool, day, as_of=datetime.now(timezone.utc), deadlines=deadlines)
    await reconciliation.add_meta_counts(report, graph, waba_id=waba_id, numbers=await queries.known_numbers(pool),
                                         tolerance=tolerance)
    gaps = reconciliation.finish(report, await checkpoints.latest(pool, ledger_key))
    row = await reconciliation.save(pool, report, gaps, workflow_id=workflow_id, run_id=run_id)
    return ReconcileResult(date=day.isoformat(), version=row["version"], status=row["status"], sha256=row["sha256"],
                           checkpoint_tree_size=row["checkpoint_tree_size"], gaps=gaps[:100])
