"""export_bundle: write an eDiscovery bundle and keep it, write-once, in the object store."""

from datetime import timedelta

import asyncpg
from temporalio import activity

from wa_archive.discovery.export_store import store_export
from wa_archive.integrity.ledger import Signer
from wa_archive.models import ExportInput, ExportOutput
from wa_archive.names import EXPORT_BUNDLE
from wa_archive.storage import ObjectStore


class ExportActivities:
    def __init__(self, pool: asyncpg.Pool, store: ObjectStore, retention_days: int, signer: Signer) -> None:
        self.pool = pool
        self.store = store
        self.signer = signer  # the worker's ledger key signs each bundle's manifest
        self.retention = timedelta(days=retention_days)

    @activity.defn(name=EXPORT_BUNDLE)
    async def export_bundle(self, inp: ExportInput) -> ExportOutput:
        """Build the bundle in a temp file (progress as heartbeats), then store it."""
        return await store_export(
            self.pool, self.store, inp, signer=self.signer, retention=self.retention,
            first_attempt=activity.info().attempt == 1,
            on_progress=lambda done, total: activity.heartbeat({"done": done, "total": total}))
