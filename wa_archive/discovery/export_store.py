"""An export bundle kept in the object store: built in a temporary file, then stored write-once
under the export's id with the export retention; the export itself is one access-log entry."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import structlog

from wa_archive.access import access_log
from wa_archive.discovery.export import ExportQuery, write_bundle
from wa_archive.integrity.ledger import Signer
from wa_archive.models import ExportInput, ExportOutput
from wa_archive.storage import ObjectStore

log = structlog.get_logger("wa_archive.exports")

CHUNK = 1024 * 1024


def export_key(export_id: str) -> str:
    return f"exports/{export_id}.zip"


async def store_export(
    pool: asyncpg.Pool, store: ObjectStore, inp: ExportInput, *, signer: Signer, retention: timedelta,
    first_attempt: bool, on_progress: Callable[[int, int], None] | None = None,
) -> ExportOutput:
    """Write the bundle (the signer's key signs its manifest) and store it; `on_progress(done, total)`
    while messages are written. Only the first attempt is logged as an access: a retry is the same export."""
    query = ExportQuery(phone=inp.phone, since=inp.since, until=inp.until)
    if first_attempt:
        await access_log.record_access(pool, actor=inp.actor, role=inp.role, action="export",
                                       target={"export_id": inp.export_id, **query.model_dump(mode="json")},
                                       remote_addr=None)
    with tempfile.TemporaryDirectory(prefix="wa-export-") as tmp:
        out = Path(tmp) / "bundle.zip"
        result = await write_bundle(pool, store, query, out, exported_by=f"{inp.actor} ({inp.role})",
                                    signer=signer, on_progress=on_progress)
        stored = await store.put_stream(
            export_key(inp.export_id), _file_chunks(out), content_type="application/zip",
            metadata={"export-id": inp.export_id}, expected_sha256=None,
            retain_until=datetime.now(timezone.utc) + retention)
    log.info("export_written", export_id=inp.export_id, messages=result.messages, size=stored.size)
    return ExportOutput(export_id=inp.export_id, storage_key=stored.key, sha256=stored.sha256,
                        size=stored.size, messages=result.messages, media=result.media)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        while block := await asyncio.to_thread(fh.read, CHUNK):
            yield block
    finally:
        fh.close()
