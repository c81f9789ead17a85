"""The access log: every read of the archive, appended with its ledger leaf; never changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from wa_archive.integrity import ledger


async def record_access(pool: asyncpg.Pool, *, actor: str, role: str, action: str, target: dict[str, Any],
                        remote_addr: str | None) -> None:
    """Append one read of the archive to the access log (rows are never changed afterwards)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO access_log (actor, role, action, target, remote_addr) VALUES ($1,$2,$3,$4,$5)"
            " RETURNING *", actor, role, action, target, remote_addr,
        )
        await ledger.append(conn, "access", str(row["id"]), ledger.access_digest(row))


async def list_access(pool: asyncpg.Pool, *, since: datetime | None, limit: int = 10000) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM access_log WHERE ($1::timestamptz IS NULL OR at >= $1) ORDER BY id LIMIT $2",
        since, limit,
    )
    return [{"id": r["id"], "at": r["at"].isoformat(), "actor": r["actor"], "role": r["role"],
             "action": r["action"], "target": r["target"], "remote_addr": r["remote_addr"]} for r in rows]


async def latest_access(pool: asyncpg.Pool, limit: int = 500) -> list[dict[str, Any]]:
    """The newest `limit` rows of the access log, newest first."""
    rows = await pool.fetch("SELECT * FROM access_log ORDER BY id DESC LIMIT $1", limit)
    return [{"id": r["id"], "at": r["at"].isoformat(), "actor": r["actor"], "role": r["role"],
             "action": r["action"], "target": r["target"], "remote_addr": r["remote_addr"]} for r in rows]
