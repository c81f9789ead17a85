"""Queries of the daily reconciliation: what the archive saw in a window, where each id ended up,
and the write-once reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

import asyncpg

from wa_archive.db.queries import Executor, insert_failure_row
from wa_archive.integrity import ledger

# Failure rows the reconciliation writes itself never count as a message's recorded failure.
RECONCILIATION_STAGE = "reconciliation"

# Every message id first seen in [start, end): carried by a delivery, returned by Meta for a send the
# proxy or record API stored, or named by a status webhook; with where it ended up.
_DAY_IDS = """
WITH seen AS (
    SELECT md.message_id AS id, min(d.received_at) AS seen_at, true AS by_delivery, false AS by_send,
           false AS by_status
      FROM message_deliveries md JOIN deliveries d ON d.sha256 = md.delivery_sha256
     WHERE d.received_at >= $1 AND d.received_at < $2 GROUP BY md.message_id
    UNION ALL
    SELECT message_id, min(recorded_at), false, true, false FROM outbound_sends
     WHERE accepted AND message_id IS NOT NULL AND recorded_at >= $1 AND recorded_at < $2 GROUP BY message_id
    UNION ALL
    SELECT message_id, min(recorded_at), false, false, true FROM status_events
     WHERE recorded_at >= $1 AND recorded_at < $2 GROUP BY message_id
), day AS (
    SELECT id, min(seen_at) AS seen_at, bool_or(by_delivery) AS by_delivery, bool_or(by_send) AS by_send,
           bool_or(by_status) AS by_status
      FROM seen GROUP BY id
)
SELECT day.*, m.archive_status, m.direction, m.flags, m.phone_number_id AS message_number,
       s.phone_number_id AS send_number, s.message_id IS NOT NULL AS has_send,
       -- an id the day's deliveries carried needs no look-up (a million of them on a busy day)
       (day.by_delivery OR EXISTS (SELECT 1 FROM message_deliveries x WHERE x.message_id = day.id)) AS carried,
       EXISTS (SELECT 1 FROM media x WHERE x.message_id = day.id) AS has_media,
       EXISTS (SELECT 1 FROM archive_failures f WHERE f.message_id = day.id AND f.stage <> $3) AS failed
  FROM day
  LEFT JOIN messages m ON m.id = day.id
  LEFT JOIN outbound_sends s ON s.message_id = day.id AND s.accepted
 WHERE NOT EXISTS (SELECT 1 FROM message_deliveries x JOIN deliveries d ON d.sha256 = x.delivery_sha256
                    WHERE x.message_id = day.id AND d.received_at < $1)
   AND NOT EXISTS (SELECT 1 FROM outbound_sends o WHERE o.message_id = day.id AND o.accepted AND o.recorded_at < $1)
   AND NOT EXISTS (SELECT 1 FROM status_events e WHERE e.message_id = day.id AND e.recorded_at < $1)
"""


async def stream_ids_first_seen(pool: asyncpg.Pool, start: datetime, end: datetime,
                                batch: int = 10_000) -> AsyncIterator[asyncpg.Record]:
    """Every message id the archive first saw in [start, end), with its record, send, media and failure
    state, read through a cursor `batch` rows at a time, so the day never sits in memory."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        async for row in conn.cursor(_DAY_IDS, start, end, RECONCILIATION_STAGE, prefetch=batch):
            yield row


async def first_delivery_bodies(db: Executor, message_ids: list[str]) -> dict[str, tuple[str, bytes]]:
    """For each id, the earliest stored delivery that named it (as a message or a status): sha256, bytes."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (x.message_id) x.message_id, d.sha256, d.body FROM ("
        "  SELECT message_id, delivery_sha256 FROM message_deliveries WHERE message_id = ANY($1::text[])"
        "  UNION ALL SELECT message_id, delivery_sha256 FROM status_events WHERE message_id = ANY($1::text[])) x"
        " JOIN deliveries d ON d.sha256 = x.delivery_sha256 ORDER BY x.message_id, d.received_at", message_ids)
    return {r["message_id"]: (r["sha256"], bytes(r["body"])) for r in rows}


async def carrying_deliveries(db: Executor, message_ids: list[str]) -> list[asyncpg.Record]:
    """(delivery sha256, received_at, message_id) of every stored delivery carrying one of the ids."""
    return list(await db.fetch(
        "SELECT md.delivery_sha256, d.received_at, md.message_id FROM message_deliveries md"
        " JOIN deliveries d ON d.sha256 = md.delivery_sha256 WHERE md.message_id = ANY($1::text[])"
        " ORDER BY d.received_at, md.message_id", message_ids))


async def deliveries_without_records(db: Executor, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Deliveries stored in [start, end) with updates of which nothing was recorded: no message link,
    status, raw event or template event (a large delivery whose IngestDelivery never started)."""
    return list(await db.fetch(
        "SELECT sha256, received_at, body FROM deliveries d WHERE received_at >= $1 AND received_at < $2"
        " AND updates > 0"
        " AND NOT EXISTS (SELECT 1 FROM message_deliveries x WHERE x.delivery_sha256 = d.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM status_events x WHERE x.delivery_sha256 = d.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM webhook_events x WHERE x.delivery_sha256 = d.sha256)"
        " AND NOT EXISTS (SELECT 1 FROM template_events x WHERE x.delivery_sha256 = d.sha256)"
        " ORDER BY received_at", start, end))


async def recorded_ids(db: Executor, message_ids: list[str]) -> set[str]:
    """The ids among these that the archive holds anything for: a record, a status, a link or a failure."""
    rows = await db.fetch(
        "SELECT i FROM unnest($1::text[]) AS i WHERE EXISTS (SELECT 1 FROM messages m WHERE m.id = i)"
        " OR EXISTS (SELECT 1 FROM status_events s WHERE s.message_id = i)"
        " OR EXISTS (SELECT 1 FROM message_deliveries l WHERE l.message_id = i)"
        " OR EXISTS (SELECT 1 FROM archive_failures f WHERE f.message_id = i AND f.stage <> $2)",
        message_ids, RECONCILIATION_STAGE)
    return {r["i"] for r in rows}


async def media_of(db: Executor, message_ids: list[str]) -> list[asyncpg.Record]:
    return list(await db.fetch(
        "SELECT message_id, position, media_id, status, stored_at FROM media WHERE message_id = ANY($1::text[])"
        " ORDER BY message_id, position", message_ids))


async def archived_outbound(db: Executor, start: datetime, end: datetime, *, exclude_flag: str) -> dict[str, int]:
    """Outbound messages archived with a message time in [start, end), per business number."""
    rows = await db.fetch(
        "SELECT coalesce(phone_number_id, '') AS number, count(*) AS n FROM messages WHERE direction = 'out'"
        " AND archive_status = 'archived' AND ts >= $1 AND ts < $2 AND NOT ($3 = ANY(flags))"
        " GROUP BY phone_number_id", start, end, exclude_flag)
    return {r["number"]: r["n"] for r in rows}


async def known_numbers(db: Executor) -> dict[str, dict[str, str | None]]:
    """Every business number the archive knows, with its latest display number and WABA id."""
    rows = await db.fetch(
        "SELECT n.phone_number_id, m.display_phone_number, m.waba_id FROM ("
        "  SELECT DISTINCT phone_number_id FROM outbound_sends"
        "  UNION SELECT DISTINCT phone_number_id FROM messages WHERE phone_number_id IS NOT NULL) n"
        " LEFT JOIN LATERAL (SELECT display_phone_number, waba_id FROM messages x"
        "  WHERE x.phone_number_id = n.phone_number_id AND x.display_phone_number IS NOT NULL"
        "  ORDER BY ts DESC LIMIT 1) m ON true")
    return {r["phone_number_id"]: {"display": r["display_phone_number"], "waba_id": r["waba_id"]} for r in rows}


# Reports --------------------------------------------------------------------------------------------


async def insert_report(
    conn: asyncpg.Connection, *, report_date: date, version: int, status: str, body: str, sha256: str,
    checkpoint: asyncpg.Record | None, workflow_id: str | None, run_id: str | None,
) -> asyncpg.Record:
    """The report row and its ledger leaf (call inside a transaction)."""
    row = await conn.fetchrow(
        "INSERT INTO reconciliation_reports (report_date, version, status, body, sha256, checkpoint_tree_size,"
        " checkpoint_root, workflow_id, run_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING *",
        report_date, version, status, body, sha256, checkpoint["tree_size"] if checkpoint else None,
        checkpoint["root_hash"] if checkpoint else None, workflow_id, run_id)
    await ledger.append(conn, "reconciliation", str(row["id"]), ledger.reconciliation_digest(row))
    return row


async def next_version(conn: asyncpg.Connection, report_date: date) -> int:
    value: int = await conn.fetchval(
        "SELECT coalesce(max(version), 0) + 1 FROM reconciliation_reports WHERE report_date = $1", report_date)
    return value


async def insert_gap_failure(conn: asyncpg.Connection, *, record_id: str, workflow_id: str, run_id: str,
                             summary: str, gaps: list[dict[str, Any]]) -> None:
    """The critical failure row of a red report (with its ledger leaf), named after the report."""
    await insert_failure_row(
        conn, message_id=record_id, stage=RECONCILIATION_STAGE, media_id=None, workflow_id=workflow_id,
        run_id=run_id, retry_state=None, last_error_type="ReconciliationGap", last_error=summary, attempts=gaps)


async def reports(db: Executor, report_date: date | None = None) -> list[asyncpg.Record]:
    """Every version of one day's report (newest first), or the latest version of every day."""
    if report_date is not None:
        return list(await db.fetch("SELECT * FROM reconciliation_reports WHERE report_date = $1"
                                   " ORDER BY version DESC", report_date))
    return list(await db.fetch(
        "SELECT DISTINCT ON (report_date) r.*, count(*) OVER (PARTITION BY report_date) AS versions"
        " FROM reconciliation_reports r ORDER BY report_date DESC, version DESC"))


async def report_leaf(db: Executor, report_id: int) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT seq, digest FROM ledger_leaves WHERE kind = 'reconciliation'"
                             " AND record_id = $1 ORDER BY seq DESC LIMIT 1", str(report_id))


# The auditors' pages ---------------------------------------------------------------------------------

# Per day, the latest version's status and each number's counts, read out of the stored JSON in SQL so
# that listing many days never loads their id lists.
_DAY_SUMMARIES = """
SELECT DISTINCT ON (report_date) r.id, r.report_date, r.version, r.status, r.sha256, r.created_at,
       count(*) OVER (PARTITION BY r.report_date) AS versions,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                  'phone_number_id', n->'phone_number_id', 'status', n->'status', 'received', n->'received',
                  'archived', n->'archived', 'failed', n->'failed', 'pending', n->'pending',
                  'in_progress', n->'in_progress', 'backfilled', n->'backfilled',
                  'off_channel', jsonb_array_length(coalesce(n->'off_channel', '[]'::jsonb)),
                  'unhanded_deliveries', n->'unhanded_deliveries', 'late_media', n->'late_media',
                  'meta_sent', n->'meta_sent', 'archived_outbound', n->'archived_outbound')
               ORDER BY n->>'phone_number_id'), '[]'::jsonb)
          FROM jsonb_array_elements(r.body::jsonb -> 'numbers') n) AS numbers
  FROM reconciliation_reports r
 ORDER BY r.report_date DESC, r.version DESC
 LIMIT $1
"""


async def day_summaries(db: Executor, limit: int) -> list[asyncpg.Record]:
    """The latest version of the `limit` most recent reconciled days, with per-number counts only."""
    return list(await db.fetch(_DAY_SUMMARIES, limit))


async def ids_with_message_row(db: Executor, message_ids: list[str]) -> set[str]:
    """The ids among these that have a message row (archived or failed), i.e. a message page."""
    rows = await db.fetch("SELECT id FROM messages WHERE id = ANY($1::text[])", message_ids)
    return {r["id"] for r in rows}


async def reports_for_days(db: Executor, first: date | None, last: date | None) -> list[asyncpg.Record]:
    """Every version of every report of the UTC days first..last (inclusive; None: unbounded), oldest first."""
    return list(await db.fetch(
        "SELECT id, report_date, version, status, body, sha256 FROM reconciliation_reports"
        " WHERE ($1::date IS NULL OR report_date >= $1) AND ($2::date IS NULL OR report_date <= $2)"
        " ORDER BY report_date, version", first, last))
