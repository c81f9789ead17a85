"""Disposition: removing what is past retention and not on hold, and recording what was removed.

One message at a time, inside a transaction that holds its row lock (so a legal hold set meanwhile
waits, and then finds nothing, or lands first and stops us): re-check that it is due, remove its
objects (the store refuses anything still locked or held), write the disposition record with its
ledger leaf, then delete the rows. A crash after the objects went leaves the rows; the next run finds
the objects already gone and completes the record. The record keeps hashes, never content: the
message's ledger digest, the payload and text hashes, each object's SHA-256 and size, the keyed
contact hash instead of the phone, and the hash of each storage key (keys contain the phone).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import asyncpg
import structlog

from wa_archive.errors import RetentionActive
from wa_archive.integrity import ledger
from wa_archive.models import DispositionBatch
from wa_archive.retention import holds, policies
from wa_archive.storage import ObjectStore
from wa_archive.storage.posture import sweep_canaries

log = structlog.get_logger("wa_archive.disposition")

DUE_SQL = """
SELECT m.id, m.ts, m.direction, m.contact_phone, m.retain_until, m.retention_policy_id,
       (SELECT count(*) FROM media d WHERE d.message_id = m.id AND d.status = 'archived') AS objects,
       (SELECT coalesce(sum(d.size), 0) FROM media d WHERE d.message_id = m.id AND d.status = 'archived') AS bytes
FROM messages m
WHERE m.retain_until <= now() AND cardinality(m.hold_cases) = 0
  AND ($1::text IS NULL OR m.contact_phone = $1)
  AND NOT EXISTS (SELECT 1 FROM media d WHERE d.message_id = m.id AND (d.legal_hold OR d.retain_until > now()))
ORDER BY m.retain_until, m.id
LIMIT $2
"""

class Disposer:
    def __init__(self, pool: asyncpg.Pool, store: ObjectStore, contact_key: Callable[[str], str] | None) -> None:
        self.pool = pool
        self.store = store
        self.contact_key = contact_key

    async def prepare(self, default_days: int) -> int:
        """Before a run: rows without retention get the default, lapsed lock canaries go, and objects
        are brought in line with holds, so nothing held slips through; returns the hold changes."""
        await policies.fill_missing(self.pool, default_days)
        swept = await sweep_canaries(self.store)
        if swept:
            log.info("lock_canaries_removed", count=swept)
        return await holds.reconcile(self.pool, self.store)

    async def dispose_due(self, *, phone: str | None, limit: int, run_id: str | None,
                          on_progress: Callable[[int, int], None] | None = None) -> DispositionBatch:
        """Remove up to `limit` due messages, each under its contact's deferred erasure request if
        there is one; what the store still refuses is deferred. `on_progress(done, total)` as it goes."""
        due = await self.due(phone=phone, limit=limit)
        out = DispositionBatch()
        for n, item in enumerate(due, 1):
            request = await self._deferred_erasure(item["contact"]) if item["contact"] else None
            try:
                done = await self.dispose_message(
                    item["id"], reason="erasure_request" if request else "retention_expired",
                    erasure_request_id=request, run_id=run_id)
            except RetentionActive as exc:
                log.warning("disposition_deferred", message_id=item["id"], reason=str(exc))
                out.deferred.append(item["id"])
                continue
            if done:
                out.removed += 1
                out.bytes += done["bytes"]
            if on_progress:
                on_progress(n, len(due))
        out.more = len(due) == limit and out.removed > 0
        log.info("disposition_batch", removed=out.removed, bytes=out.bytes, deferred=len(out.deferred))
        return out

    async def _deferred_erasure(self, phone: str) -> int | None:
        """The contact's oldest erasure request waiting for retention to lapse: its removals carry it out."""
        request_id: int | None = await self.pool.fetchval(
            "SELECT id FROM erasure_requests WHERE status = 'deferred' AND phone = $1 ORDER BY id LIMIT 1", phone)
        return request_id

    async def due(self, *, phone: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(DUE_SQL, phone, limit)
        return [{"id": r["id"], "timestamp": r["ts"].isoformat(), "direction": r["direction"],
                 "contact": r["contact_phone"], "retain_until": r["retain_until"].isoformat(),
                 "policy_id": r["retention_policy_id"], "objects": r["objects"], "bytes": r["bytes"]} for r in rows]

    async def held_past_retention(self) -> int:
        held: int = await self.pool.fetchval(
            "SELECT count(*) FROM messages WHERE retain_until <= now() AND cardinality(hold_cases) > 0")
        return held

    async def dispose_message(self, message_id: str, *, reason: str = "retention_expired",
                              erasure_request_id: int | None = None,
                              run_id: str | None = None) -> dict[str, Any] | None:
        """Remove one message if it is due; None if it is already gone. Raises RetentionActive if not due."""
        now = datetime.now(timezone.utc)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM messages WHERE id = $1 FOR UPDATE", message_id)
            if row is None:
                return None
            if row["hold_cases"]:
                raise RetentionActive(f"message {message_id} is on legal hold ({', '.join(row['hold_cases'])})")
            if row["retain_until"] is None or row["retain_until"] > now:
                raise RetentionActive(f"message {message_id} is retained until {row['retain_until']}")
            media = await conn.fetch("SELECT * FROM media WHERE message_id = $1 ORDER BY position", message_id)
            removed = []
            for m in media:
                versions = 0
                if m["status"] == "archived":
                    versions = await self.store.dispose(m["storage_key"])  # refuses if locked or held
                removed.append({"position": m["position"], "media_id": m["media_id"], "status": m["status"],
                                "sha256": m["sha256"], "size": m["size"], "mime_type": m["mime_type"],
                                "storage_key_sha256": ledger.sha256_hex((m["storage_key"] or "").encode()),
                                "versions_removed": versions})
            record = await self._record(conn, row, media, removed)
            # The application may neither write a disposition record nor delete evidence itself: the
            # owner's functions re-check the rule (past retention, nothing held, the record
            # written) and write the record with the message's own retention, then remove the rows.
            disp = await conn.fetchrow("SELECT * FROM record_disposition($1, $2, $3, $4, $5)", message_id, reason,
                                       erasure_request_id, record, run_id)
            await ledger.append(conn, "disposition", str(disp["id"]), ledger.disposition_digest(disp))
            await conn.execute("SELECT dispose_message_rows($1)", message_id)
        return {"message_id": message_id, "disposition_id": disp["id"],
                "objects": sum(1 for r in removed if r["versions_removed"]),
                "bytes": sum(r["size"] or 0 for r in removed if r["status"] == "archived")}

    async def _record(self, conn: asyncpg.Connection, row: asyncpg.Record, media: list[asyncpg.Record],
                      removed: list[dict[str, Any]]) -> dict[str, Any]:
        statuses = await conn.fetch("SELECT * FROM status_events WHERE message_id = $1 ORDER BY id", row["id"])
        failures = await conn.fetch("SELECT * FROM archive_failures WHERE message_id = $1 ORDER BY id", row["id"])
        judged = await conn.fetch("SELECT * FROM message_consent WHERE message_id = $1", row["id"])
        deliveries = await conn.fetch("SELECT delivery_sha256 FROM message_deliveries WHERE message_id = $1"
                                      " UNION SELECT delivery_sha256 FROM status_events WHERE message_id = $1",
                                      row["id"])
        contact = row["contact_phone"] or row["contact_wa_id"] or row["contact_user_id"]
        return {
            "message_digest": ledger.message_digest(row, media),
            "direction": row["direction"], "type": row["type"], "source": row["source"],
            "timestamp": row["ts"].astimezone(timezone.utc).isoformat(),
            "archived_at": row["archived_at"].astimezone(timezone.utc).isoformat(),
            "contact_key": self.contact_key(contact) if (contact and self.contact_key) else None,
            "payload_sha256": ledger.sha256_hex(ledger.canonical(row["payload"])),
            "text_sha256": ledger.sha256_hex(row["text"].encode()) if row["text"] is not None else None,
            "template_sha256": row["template_sha256"],
            "media": removed,
            "status_events": [{"id": str(s["id"]), "digest": ledger.status_digest(s)} for s in statuses],
            "failures": [{"id": str(f["id"]), "digest": ledger.failure_digest(f)} for f in failures],
            # Its send-time consent goes with it; the consent entries it cites stay in the log.
            "message_consent": [{"id": j["message_id"], "digest": ledger.message_consent_digest(j)} for j in judged],
            "deliveries": sorted(d["delivery_sha256"] for d in deliveries),
        }


async def list_dispositions(pool: asyncpg.Pool, *, since: datetime | None = None,
                            limit: int = 10000) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM dispositions WHERE ($1::timestamptz IS NULL OR disposed_at >= $1)"
                            " ORDER BY id LIMIT $2", since, limit)
    return [{"id": r["id"], "message_id": r["message_id"], "disposed_at": r["disposed_at"].isoformat(),
             "reason": r["reason"], "policy_id": r["policy_id"], "retain_until": r["retain_until"].isoformat(),
             "erasure_request_id": r["erasure_request_id"], "run_id": r["run_id"], "record": r["record"]} for r in rows]
