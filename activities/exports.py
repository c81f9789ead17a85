"""export_bundle: write an eDiscovery bundle and keep it, write-once, in the object store."""

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import structlog
from temporalio import activity

from wa_archive.access import access_log
from wa_archive.discovery.export import ExportQuery, write_bundle
from wa_archive.integrity.ledger import Signer
from wa_archive.models import ExportInput, ExportOutput
from wa_archive.names import EXPORT_BUNDLE
from wa_archive.storage import ObjectStore

log = structlog.get_logger("wa_archive.exports")


def export_key(export_id: str) -> str:
    return f"exports/{export_id}.zip"


class ExportActivities:
    def __init__(self, pool: asyncpg.Pool, store: ObjectStore, retention_days: int, signer: Signer) -> None:
        self.pool = pool
        self.store = store
        self.signer = signer  # the worker's ledger key signs each bundle's manifest
        self.retention = timedelta(days=retention_days)

    @activity.defn(name=EXPORT_BUNDLE)
    async def export_bundle(self, inp: ExportInput) -> ExportOutput:
        """Build the bundle in a temp file (progress as heartbeats), then store it."""
        query = ExportQuery(phone=inp.phone, since=inp.since, until=inp.until)
        if activity.info().attempt == 1:  # one access-log entry per export, not per retry
            await access_log.record_access(self.pool, actor=inp.actor, role=inp.role, action="export",
                                        target={"export_id": inp.export_id, **query.model_dump(mode="json")},
                                        remote_addr=None)
        with tempfile.TemporaryDirectory(prefix="wa-export-") as tmp:
            out = Path(tmp) / "bundle.zip"
            result = await write_bundle(
                self.pool, self.store, query, out, exported_by=f"{inp.actor} ({inp.role})", signer=self.signer,
                on_progress=lambda done, total: activity.heartbeat({"done": done, "total": total}))

            async def chunks():
                with open(out, "rb") as fh:
                    while block := fh.read(1024 * 1024):
                        yield block

            stored = await self.store.put_stream(
                export_key(inp.export_id), chunks(), content_type="application/zip",
                metadata={"export-id": inp.export_id}, expected_sha256=None,
                retain_until=datetime.now(timezone.utc) + self.retention)
        log.info("export_written", export_id=inp.export_id, messages=result.messages, size=stored.size)
        return ExportOutput(export_id=inp.export_id, storage_key=stored.key, sha256=stored.sha256,
                            size=stored.size, messages=result.messages, media=result.media)
