"""The access_log table: one append per read (or refused attempt), read back in pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

INSERT = ("INSERT INTO access_log (actor, role, action, target, remote_addr, outcome) VALUES ($1,$2,$3,$4,$5,$6)"
          " RETURNING *")


async def insert(conn: asyncpg.Connection, *, actor: str, role: str, action: str, target: dict[str, Any],
                 remote_addr: str | None, outcome: str) -> asyncpg.Record:
    """The new row (inside the caller's transaction, which appends its ledger leaf)."""
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
