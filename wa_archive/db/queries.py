"""Small query functions over the archive index. Writes are idempotent: a retry changes nothing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from wa_archive.integrity import ledger
from wa_archive.sources.meta.payload import StatusEvent, TemplateEvent, WebhookEvent
from wa_archive.sources.meta.templates import Snapshot

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# Deliveries ------------------------------------------------------------------------------------


async def insert_delivery(
    db: Executor, *, sha256: str, source: str, body: bytes, signature: str | None,
    remote_addr: str | None, updates: int, received_at: datetime,
) -> bool:
    """Store a delivery's exact bytes; False if the same body was stored before."""
    status: str = await db.execute(
        "INSERT INTO deliveries (sha256, source, body, signature, remote_addr, updates, received_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sha256) DO NOTHING",
        sha256, source, body, signature, remote_addr, updates, received_at,
    )
    return status.endswith(" 1")


async def insert_delivery_with_messages(
    db: Executor, *, sha256: str, source: str, body: bytes, signature: str | None,
    remote_addr: str | None, updates: int, received_at: datetime, message_ids: list[str],
) -> set[str]:
    """Store a delivery and link its messages in one statement (one commit on the webhook's hot
    path); returns the ids among them with nothing left to do: already archived, or disposed of
    (never linked again)."""
    rows = await db.fetch(
        "WITH d AS (INSERT INTO deliveries (sha256, source, body, signature, remote_addr, updates,"
        "  received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sha256) DO NOTHING),"
        " l AS (INSERT INTO message_deliveries (message_id, delivery_sha256)"
        "  SELECT u.id, $1 FROM unnest($8::text[]) AS u(id)"
        "  WHERE NOT EXISTS (SELECT 1 FROM dispositions x WHERE x.message_id = u.id) ON CONFLICT DO NOTHING)"
        " SELECT id FROM messages WHERE id = ANY($8::text[]) AND archive_status = 'archived'"
        " UNION SELECT message_id FROM dispositions WHERE message_id = ANY($8::text[])",
        sha256, source, body, signature, remote_addr, updates, received_at, message_ids,
    )
    return {r["id"] for r in rows}


async def get_delivery(db: Executor, sha256: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM deliveries WHERE sha256 = $1", sha256)


async def link_deliveries(db: Executor, delivery_sha256: str, message_ids: list[str]) -> None:
    """Link messages to a delivery that carried them; a message disposed of is never linked again."""
    if not message_ids:
        return
    await db.execute(
        "INSERT INTO message_deliveries (message_id, delivery_sha256)"
        " SELECT u.id, $2 FROM unnest($1::text[]) AS u(id)"
        " WHERE NOT EXISTS (SELECT 1 FROM dispositions x WHERE x.message_id = u.id)"
        " ON CONFLICT DO NOTHING",
        message_ids, delivery_sha256,
    )


async def delivery_carried(db: Executor, delivery_sha256: str, message_id: str) -> bool:
    """Whether the message is linked to the delivery (the fan-out links each message it starts)."""
    return bool(await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM message_deliveries WHERE message_id = $1 AND delivery_sha256 = $2)",
        message_id, delivery_sha256))


async def was_disposed(db: Executor, message_id: str) -> bool:
    """Whether the message was disposed of (retention over, or an erasure request): its disposition
    record stays, and nothing of it is recorded again."""
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM dispositions WHERE message_id = $1)", message_id))


async def insert_status_events(conn: asyncpg.Connection, delivery_sha256: str, events: list[StatusEvent]) -> None:
    """New status rows, each with its ledger leaf (call inside a transaction); repeats are ignored,
    and so are statuses of a message disposed of (its status rows went with it)."""
    # In one fixed order, whatever the payload's: two servers writing deliveries that carry the same
    # statuses in different orders then wait on each other's row instead of each holding one the other
    # needs (a deadlock, which PostgreSQL ends by failing one delivery with a 503).
    for e in sorted(events, key=lambda e: (e.message_id, e.raw_timestamp or "", e.status)):
        row = await conn.fetchrow(
            "INSERT INTO status_events (message_id, status, ts, raw_timestamp, recipient_id, payload,"
            " delivery_sha256) SELECT $1, $2, $3, $4, $5, $6, $7"
            " WHERE NOT EXISTS (SELECT 1 FROM dispositions WHERE message_id = $1)"
            " ON CONFLICT (message_id, status, raw_timestamp) DO NOTHING RETURNING *",
            e.message_id, e.status, e.timestamp, e.raw_timestamp, e.recipient_id, e.payload, delivery_sha256)
        if row is not None:
            await ledger.append(conn, "status_event", str(row["id"]), ledger.status_digest(row))


async def insert_webhook_events(db: Executor, delivery_sha256: str, events: list[WebhookEvent]) -> None:
    if not events:
        return
    await db.executemany(
        "INSERT INTO webhook_events (delivery_sha256, position, field, kind, waba_id, payload)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        [(delivery_sha256, e.position, e.field, e.kind, e.waba_id, e.payload) for e in events],
    )


async def delivered_message_ids(db: Executor, message_ids: list[str]) -> set[str]:
    """The ids among these that some stored delivery carried as a message (an echo among them)."""
    rows = await db.fetch(
        "SELECT DISTINCT message_id FROM message_deliveries WHERE message_id = ANY($1::text[])", message_ids)
    return {r["message_id"] for r in rows}


async def settled_message_ids(db: Executor, message_ids: list[str]) -> set[str]:
    """The ids with nothing left to start: archived, or disposed of (never brought back)."""
    rows = await db.fetch(
        "SELECT id FROM messages WHERE id = ANY($1::text[]) AND archive_status = 'archived'"
        " UNION SELECT message_id FROM dispositions WHERE message_id = ANY($1::text[])",
        message_ids,
    )
    return {r["id"] for r in rows}


async def insert_template_snapshot(pool: asyncpg.Pool, snap: Snapshot, *, waba_id: str, name: str,
                                   language: str) -> bool:
    """Write a snapshot once; an identical definition fetched again shares the existing row."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO template_snapshots (sha256, waba_id, template_id, name, language, definition,"
            " canonical) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (sha256) DO NOTHING RETURNING *",
            snap.sha256, waba_id, str(snap.definition.get("id") or "") or None, name, language,
            snap.definition, snap.canonical,
        )
        if row is not None:
            await ledger.append(conn, "template_snapshot", row["sha256"], ledger.snapshot_digest(row))
    return row is not None


async def record_outbound_send(
    pool: asyncpg.Pool, *, message_id: str | None, phone_number_id: str, via: str,
    request: dict[str, Any], response: dict[str, Any], http_status: int | None, accepted: bool, token_name: str,
) -> asyncpg.Record | None:
    """Keep a send exactly as exchanged with Meta (accepted or rejected); repeats are ignored.

    Returns the stored send of the message: this one, or the one stored first (the proxy's, when its
    hand-over failed and the caller then posted the exchange to the record API). None for a rejected
    send, which has no message id.
    """
    rows = await pool.fetch(
        "WITH new AS (INSERT INTO outbound_sends (message_id, phone_number_id, via, request, response,"
        "  http_status, accepted, token_name) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
        "  ON CONFLICT (message_id) WHERE message_id IS NOT NULL DO NOTHING RETURNING *)"
        " SELECT * FROM new UNION ALL"
        " SELECT * FROM outbound_sends WHERE $1::text IS NOT NULL AND message_id = $1"
        "  AND NOT EXISTS (SELECT 1 FROM new)",
        message_id, phone_number_id, via, request, response, http_status, accepted, token_name,
    )
    return rows[0] if message_id is not None and rows else None


async def stored_send(db: Executor, message_id: str) -> asyncpg.Record | None:
    """The send of a message as the send proxy or the record API stored it."""
    return await db.fetchrow(
        "SELECT phone_number_id, via, request, response, accepted, recorded_at FROM outbound_sends"
        " WHERE message_id = $1", message_id)


async def message_statuses(db: Executor, message_id: str) -> list[asyncpg.Record]:
    """Every status webhook of a message in the order they were stored: status, time, delivery."""
    return list(await db.fetch("SELECT status, ts, delivery_sha256 FROM status_events WHERE message_id = $1"
                               " ORDER BY id", message_id))


async def template_snapshot(db: Executor, sha256: str) -> asyncpg.Record | None:
    """A template snapshot's definition and the WABA it was fetched from."""
    return await db.fetchrow("SELECT definition, waba_id FROM template_snapshots WHERE sha256 = $1", sha256)


async def insert_template_events(db: Executor, delivery_sha256: str, events: list[TemplateEvent]) -> None:
    if not events:
        return
    await db.executemany(
        "INSERT INTO template_events (delivery_sha256, position, field, waba_id, template_id,"
        " template_name, language, event, payload) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
        " ON CONFLICT DO NOTHING",
        [(delivery_sha256, e.position, e.field, e.waba_id, e.template_id, e.template_name,
          e.language, e.event, e.payload) for e in events],
    )


# The columns _message_json() reads: what a page of a search or a conversation selects, rather than
# every column (the stored payload, often the largest, would be sent and decoded for nothing).
LISTED_COLUMNS = ("id, source, direction, type, ts, raw_timestamp, contact_phone, contact_wa_id, contact_user_id,"
                  " contact_username, contact_name, phone_number_id, display_phone_number, waba_id, text,"
                  " related_message_id, template_name, flags, archive_status, archived_at, retain_until, hold_cases")


# A message's media in the statement that selects it: an array of the media table's own row type, in
# position order (asyncpg hands each over as a Record), so a page of messages with their media costs one
# round trip and one connection from the pool rather than two of each.
MEDIA_ROWS = "ARRAY(SELECT md FROM media md WHERE md.message_id = messages.id ORDER BY md.position) AS media_rows"
LISTED_WITH_MEDIA = f"{LISTED_COLUMNS}, {MEDIA_ROWS}"  # a page as the API and the pages show it


def listed(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Rows selected with MEDIA_ROWS (LISTED_WITH_MEDIA, or every column and MEDIA_ROWS for an export) as
    JSON, each with its media summaries."""
    return [_message_json(r, r["media_rows"]) for r in rows]


def _message_json(row: asyncpg.Record, media: list[asyncpg.Record]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "source": row["source"],
        "direction": row["direction"],
        "type": row["type"],
        "timestamp": row["ts"].isoformat(),
        "raw_timestamp": row["raw_timestamp"],
        "contact": {
            "phone": row["contact_phone"], "wa_id": row["contact_wa_id"],
            "user_id": row["contact_user_id"], "username": row["contact_username"],
            "name": row["contact_name"],
        },
        "business": {
            "phone_number_id": row["phone_number_id"],
            "display_phone_number": row["display_phone_number"], "waba_id": row["waba_id"],
        },
        "text": row["text"],
        "related_message_id": row["related_message_id"],
        "template_name": row["template_name"],
        "flags": list(row["flags"]),
        "archive_status": row["archive_status"],
        "archived_at": row["archived_at"].isoformat(),
        "retain_until": row["retain_until"].isoformat() if row["retain_until"] else None,
        "legal_hold": list(row["hold_cases"]),
        "media": [
            {
                "id": m["media_id"], "archive_id": str(m["archive_id"]),
                "download_url": f"/api/v1/media/{m['archive_id']}" if m["status"] == "archived" else None,
                "kind": m["kind"], "status": m["status"],
                "sha256": m["sha256"], "provider_sha256": m["provider_sha256"], "size": m["size"],
                "mime_type": m["mime_type"], "declared_mime_type": m["declared_mime_type"],
                "filename": m["filename"],
                "storage_url": m["storage_url"], "storage_key": m["storage_key"],
                "stored_at": m["stored_at"].isoformat() if m["stored_at"] else None,
                "retain_until": m["retain_until"].isoformat() if m["retain_until"] else None,
                "legal_hold": m["legal_hold"],
            }
            for m in media
        ],
    }


async def get_message(pool: asyncpg.Pool, message_id: str) -> dict[str, Any] | None:
    """Everything `show` prints: the message, its media, the deliveries that carried it, statuses."""
    row = await pool.fetchrow("SELECT * FROM messages WHERE id = $1", message_id)
    if row is None:
        return None
    media = await pool.fetch("SELECT * FROM media WHERE message_id = $1 ORDER BY position", message_id)
    out = _message_json(row, media)
    deliveries = await pool.fetch(
        "SELECT d.sha256, d.signature, d.received_at, d.source FROM message_deliveries md"
        " JOIN deliveries d ON d.sha256 = md.delivery_sha256 WHERE md.message_id = $1"
        " ORDER BY d.received_at",
        message_id,
    )
    out["deliveries"] = [
        {"sha256": d["sha256"], "signature": d["signature"], "source": d["source"],
         "received_at": d["received_at"].isoformat()}
        for d in deliveries
    ]
    statuses = await pool.fetch(
        "SELECT status, ts, recipient_id, payload, recorded_at FROM status_events WHERE message_id = $1"
        " ORDER BY ts, id",
        message_id,
    )
    out["statuses"] = [
        {"status": s["status"], "timestamp": s["ts"].isoformat() if s["ts"] else None,
         "recipient_id": s["recipient_id"], "errors": s["payload"].get("errors"),
         "recorded_at": s["recorded_at"].isoformat(), "raw": s["payload"]}
        for s in statuses
    ]
    out["payload"] = row["payload"]
    if row["direction"] == "out":
        out["rendered_text"] = row["text"]
        snap = None
        if row["template_sha256"]:
            snap = await pool.fetchrow("SELECT definition, fetched_at FROM template_snapshots WHERE sha256 = $1",
                                       row["template_sha256"])
        out["template"] = None if not row["template_name"] else {
            "name": row["template_name"], "language": row["template_language"],
            "sha256": row["template_sha256"],
            "definition": snap["definition"] if snap else None,
            "fetched_at": snap["fetched_at"].isoformat() if snap else None,
        }
        out["consent"] = await _send_time_consent(pool, message_id)
    return out


async def _send_time_consent(pool: asyncpg.Pool, message_id: str) -> dict[str, Any]:
    """The recipient's consent when this outbound message was sent, as judged then. A message archived
    before consent was judged has none on record: nothing proves consent for it, so it is `unknown`."""
    from wa_archive.contacts.views import message_consent

    judged = (await message_consent(pool, [message_id])).get(message_id)
    return judged or {"state": "unknown", "entry_id": None, "at": None}


# Media -----------------------------------------------------------------------------------------


async def archived_media(pool: asyncpg.Pool, archive_id: str) -> asyncpg.Record | None:
    """The archived media row with this archive id (a UUID as `show` prints it), or None."""
    if not _UUID.fullmatch(archive_id):
        return None
    return await pool.fetchrow("SELECT * FROM media WHERE archive_id = $1::uuid AND status = 'archived'",
                               archive_id)


async def find_archived_media(pool: asyncpg.Pool, media_ref: str) -> asyncpg.Record | None:
    """An archived media row by its archive id or, failing that form, by the provider's media id
    (the first stored, when one media id was archived more than once); None when there is none."""
    if _UUID.fullmatch(media_ref):
        return await archived_media(pool, media_ref)
    return await pool.fetchrow("SELECT * FROM media WHERE media_id = $1 AND status = 'archived'"
                               " ORDER BY stored_at LIMIT 1", media_ref)


async def search_messages(
    pool: asyncpg.Pool, *, phone: str | None, since: datetime | None, until: datetime | None,
    limit: int, template: str | None = None, direction: str | None = None, consent: str | None = None,
) -> list[dict[str, Any]]:
    """Messages newest first, filtered by contact phone, message time, template, direction and the
    send-time consent of outbound messages."""
    from wa_archive.discovery.search import Filters, search

    rows, _ = await search(pool, Filters(phone=phone, since=since, until=until, limit=limit,
                                         template=template, direction=direction, consent=consent),
                           columns=LISTED_WITH_MEDIA)
    return listed(rows)


# Failures --------------------------------------------------------------------------------------


async def record_attempt(
    pool: asyncpg.Pool, *, message_id: str, stage: str, media_id: str | None, attempt: int,
    error_type: str, error: str, http_status: int | None, workflow_id: str | None, run_id: str | None,
) -> None:
    """An attempt row; none for a message disposed of (its id went with its rows and does not come back)."""
    await pool.execute(
        "INSERT INTO archive_attempts (message_id, stage, media_id, attempt, error_type, error,"
        " http_status, workflow_id, run_id) SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9"
        " WHERE NOT EXISTS (SELECT 1 FROM dispositions WHERE message_id = $1)",
        message_id, stage, media_id, attempt, error_type, error, http_status, workflow_id, run_id,
    )


async def insert_failure(
    pool: asyncpg.Pool, *, message_id: str, stage: str, media_id: str | None, workflow_id: str,
    run_id: str, retry_state: str | None, last_error_type: str | None, last_error: str | None,
) -> list[dict[str, Any]]:
    """Write the critical failure row with this run's full attempt history; returns the history."""
    rows = await pool.fetch(
        "SELECT attempt, at, error_type, error, http_status FROM archive_attempts"
        " WHERE message_id = $1 AND stage = $2 AND run_id = $3"
        " AND media_id IS NOT DISTINCT FROM $4 ORDER BY attempt, id",
        message_id, stage, run_id, media_id,
    )
    attempts = [
        {"attempt": r["attempt"], "at": r["at"].isoformat(), "error_type": r["error_type"],
         "error": r["error"], "http_status": r["http_status"]}
        for r in rows
    ]
    async with pool.acquire() as conn, conn.transaction():
        await insert_failure_row(
            conn, message_id=message_id, stage=stage, media_id=media_id, workflow_id=workflow_id,
            run_id=run_id, retry_state=retry_state, last_error_type=last_error_type,
            last_error=last_error, attempts=attempts,
        )
    return attempts


async def insert_failure_row(
    conn: asyncpg.Connection, *, message_id: str, stage: str, media_id: str | None, workflow_id: str,
    run_id: str, retry_state: str | None, last_error_type: str | None, last_error: str | None,
    attempts: list[dict[str, Any]],
) -> asyncpg.Record | None:
    """A critical failure row and its ledger leaf (call inside a transaction); None if recorded
    before, or if the message was disposed of (its id, which may hold the contact's number, went
    with its rows and is not written again: the refusal is logged instead)."""
    row = await conn.fetchrow(
        "INSERT INTO archive_failures (message_id, stage, media_id, workflow_id, run_id,"
        " retry_state, last_error_type, last_error, attempts)"
        " SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9 WHERE NOT EXISTS (SELECT 1 FROM dispositions WHERE message_id = $1)"
        " ON CONFLICT DO NOTHING RETURNING *",
        message_id, stage, media_id, workflow_id, run_id, retry_state, last_error_type,
        last_error, attempts,
    )
    if row is not None:
        await ledger.append(conn, "failure", str(row["id"]), ledger.failure_digest(row))
    return row


async def list_failures(pool: asyncpg.Pool, limit: int = 1000) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM archive_failures ORDER BY created_at DESC LIMIT $1", limit)
    return [
        {"message_id": r["message_id"], "stage": r["stage"], "media_id": r["media_id"],
         "workflow_id": r["workflow_id"], "run_id": r["run_id"], "retry_state": r["retry_state"],
         "last_error_type": r["last_error_type"], "last_error": r["last_error"],
         "created_at": r["created_at"].isoformat(), "attempts": r["attempts"]}
        for r in rows
    ]


async def message_exists(db: Executor, message_id: str) -> bool:
    """Whether the archive holds a record of this message (disposed-of messages have none)."""
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1)", message_id))
