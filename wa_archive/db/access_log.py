"""The access_log table: one append per read (or refused attempt), with its ledger leaf candidate, read
back in pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

INSERT = ("INSERT INTO access_log (actor, role, action, target, remote_addr, outcome) VALUES ($1,$2,$3,$4,$5,$6)"
          " RETURNING *")


# The entry's time as access_digest() writes it, Python's isoformat() of the UTC time: seconds, then
# microseconds only when there are any, then +00:00 (to_char's patterns read no session setting).
AT_ISO = ("to_char(entry.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
           " || CASE to_char(entry.at AT TIME ZONE 'UTC', 'US') WHEN '000000' THEN ''"
           " ELSE '.' || to_char(entry.at AT TIME ZONE 'UTC', 'US') END || '+00:00'")
# A read's entry and its ledger candidate in one statement: one round trip, and one implicit
# transaction, so both commit together (durable when it returns) or neither does. The candidate's
# digest is access_digest() of the new row: the caller gives the canonical text around the two
# fields the database assigns ($7 before the time, $8 after the id; ledger.access_digest_parts()),
# the statement puts the time and the id in. `verify` recomputes it from the stored row, as ever.
INSERT_WITH_LEAF = (
    "WITH entry AS (INSERT INTO access_log (actor, role, action, target, remote_addr, outcome)"
    " VALUES ($1,$2,$3,$4,$5,$6) RETURNING *),"
    " leaf AS (INSERT INTO ledger_candidates (kind, record_id, digest)"
    " SELECT 'access', entry.id::text,"
    f" encode(sha256(convert_to($7 || '\"' || {AT_ISO} || '\",\"id\":' || entry.id::text || $8, 'UTF8')), 'hex')"
    " FROM entry)"
    " SELECT * FROM entry")


async def insert_with_leaf(pool: asyncpg.Pool, *, actor: str, role: str, action: str, target: dict[str, Any],
                           remote_addr: str | None, outcome: str, digest_head: str, digest_tail: str) -> asyncpg.Record:
    """The new row, committed with its ledger candidate (INSERT_WITH_LEAF) before this returns."""
    row: asyncpg.Record = await pool.fetchrow(INSERT_WITH_LEAF, actor, role, action, target, remote_addr, outcome,
                                              digest_head, digest_tail)
    return row


async def insert(conn: asyncpg.Connection, *, actor: str, role: str, action: str, target: dict[str, Any],
                 remote_addr: str | None, outcome: str) -> asyncpg.Record:
    """The new row (inside the caller's transaction, which appends its ledger leaf): for a target
    INSERT_WITH_LEAF cannot digest in the statement."""
    row: asyncpg.Record = await conn.fetchrow(INSERT, actor, role, action, target, remote_addr, outcome)
    return row


async def oldest_first(pool: asyncpg.Pool, *, since: datetime | None, until: datetime | None,
                       outcome: str | None, limit: int) -> list[asyncpg.Record]:
    """Entries in [since, until), in the order they were written."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM access_log WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)"
        " AND ($3::text IS NULL OR outcome = $3) ORDER BY id LIMIT $4", since, until, outcome, limit)
    return rows


async def newest_first(pool: asyncpg.Pool, *, since: datetime | None, until: datetime | None,
                       outcome: str | None, actor: str | None, before_id: int | None,
                       limit: int) -> list[asyncpg.Record]:
    """Up to `limit` entries in [since, until) with an id below `before_id`, newest first.

    Keyed on the id, which only grows and whose rows never change, so a cursor names the same
    place in the log however many entries are written meanwhile."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM access_log WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)"
        " AND ($3::text IS NULL OR outcome = $3) AND ($4::text IS NULL OR actor = $4)"
        " AND ($5::bigint IS NULL OR id < $5) ORDER BY id DESC LIMIT $6",
        since, until, outcome, actor, before_id, limit)
    return rows
