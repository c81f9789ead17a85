"""SQL of capture health: the last webhook heard per business number, and silence episodes."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import asyncpg

# As in queries.py; not imported from there, so that the settings (which parse the watched numbers
# through wa_archive.health) do not pull in the payload parsers and the ledger.
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def record_heard(db: Executor, numbers: list[tuple[str, str, str | None]], at: datetime) -> list[asyncpg.Record]:
    """Note a webhook heard at `at` for each (number, source, display number), never moving time back,
    and end the numbers' open silences there; returns the episodes ended (number, id, silent_since)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "WITH heard AS (INSERT INTO capture_numbers AS c (number, source, display_number, watched_since,"
        "  last_webhook_at)"
        "  SELECT n, s, d, $4, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS u (n, s, d)"
        "  ON CONFLICT (number) DO UPDATE SET last_webhook_at = EXCLUDED.last_webhook_at,"
        "  display_number = coalesce(EXCLUDED.display_number, c.display_number)"
        "  WHERE c.last_webhook_at IS NULL OR c.last_webhook_at < EXCLUDED.last_webhook_at)"
        " UPDATE capture_silences SET ended_at = $4 WHERE number = ANY($1::text[]) AND ended_at IS NULL"
        " AND silent_since <= $4 RETURNING number, id, silent_since",
        [n for n, _, _ in numbers], [s for _, s, _ in numbers], [d for _, _, d in numbers], at)
    return rows


async def watch_listed(conn: asyncpg.Connection, numbers: list[tuple[str, str]], at: datetime) -> None:
    """Start watching numbers named in the settings that were never heard (silent from `at`)."""
    await conn.execute(
        "INSERT INTO capture_numbers (number, source, watched_since)"
        " SELECT n, s, $3 FROM unnest($1::text[], $2::text[]) AS u (n, s) ON CONFLICT (number) DO NOTHING",
        [n for n, _ in numbers], [s for _, s in numbers], at)


async def numbers_with_open_silence(db: Executor, only: list[str] | None = None) -> list[asyncpg.Record]:
    """Every watched number (or those in `only`) with its open episode's id and start, if any."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT c.number, c.source, c.display_number, c.watched_since, c.last_webhook_at,"
        " s.id AS silence_id, s.silent_since, s.detected_at"
        " FROM capture_numbers c LEFT JOIN capture_silences s ON s.number = c.number AND s.ended_at IS NULL"
        " WHERE $1::text[] IS NULL OR c.number = ANY($1::text[]) ORDER BY c.number", only)
    return rows


async def open_silence(conn: asyncpg.Connection, number: str, silent_since: datetime, detected_at: datetime,
                       alert_minutes: float) -> int | None:
    """Open an episode; None when one is already open for the number (another check got there first)."""
    value: int | None = await conn.fetchval(
        "INSERT INTO capture_silences (number, silent_since, detected_at, alert_minutes)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (number) WHERE ended_at IS NULL DO NOTHING RETURNING id",
        number, silent_since, detected_at, alert_minutes)
    return value


async def end_silence(conn: asyncpg.Connection, silence_id: int, ended_at: datetime) -> bool:
    """Close an open episode at the first webhook heard after it; False when it was already closed."""
    done = await conn.execute("UPDATE capture_silences SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL",
                              silence_id, ended_at)
    return bool(done.endswith(" 1"))


async def list_silences(db: Executor, *, limit: int = 100) -> list[asyncpg.Record]:
    """Silence episodes, newest first."""
    rows: list[asyncpg.Record] = await db.fetch("SELECT id, number, silent_since, detected_at, alert_minutes, ended_at"
                          " FROM capture_silences ORDER BY detected_at DESC, id DESC LIMIT $1", limit)
    return rows
