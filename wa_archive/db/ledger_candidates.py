"""Ledger leaf candidates: what records add in their own transactions, and what the integrator numbers
(the application's INSERT of kind, record id and digest, and the owner's ledger_integrate(), migration 020)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


# What every record's transaction runs for its leaf (the ledger bench measures this same statement).
ADD = "INSERT INTO ledger_candidates (kind, record_id, digest) VALUES ($1, $2, $3) RETURNING id"


async def add(conn: asyncpg.Connection, kind: str, record_id: str, digest: str) -> int:
    """Add a leaf candidate inside the caller's transaction; returns the candidate's id. A plain INSERT:
    the table's CHECK allows only the ledger's kinds, and the integrator computes the leaf hash."""
    candidate: int = await conn.fetchval(ADD, kind, record_id, digest)
    return candidate


async def integrate(db: Executor, batch: int) -> list[float]:
    """Integrate up to `batch` committed candidates into the log in one transaction; the seconds each
    integrated leaf waited for its number (empty when there was nothing to do)."""
    rows = await db.fetch("SELECT seq, waited FROM ledger_integrate($1)", batch)
    return [float(r["waited"]) for r in rows]


@dataclass(frozen=True)
class Pending:
    """Candidates not yet integrated: how many, and when the oldest was written (None: none)."""

    count: int
    oldest_at: datetime | None


async def pending(db: Executor) -> Pending:
    row = await db.fetchrow("SELECT count(*) AS n, min(appended_at) AS oldest FROM ledger_candidates")
    return Pending(count=int(row["n"]), oldest_at=row["oldest"])


async def pending_since(db: Executor, kind: str, record_id: str) -> datetime | None:
    """When the record's latest candidate was written, while one waits for integration; else None."""
    at: datetime | None = await db.fetchval(
        "SELECT max(appended_at) FROM ledger_candidates WHERE kind = $1 AND record_id = $2", kind, record_id)
    return at


async def all_pending(db: Executor) -> list[asyncpg.Record]:
    """Every candidate in the order it will be integrated (for `verify`)."""
    return list(await db.fetch(
        "SELECT id, kind, record_id, digest, appended_at FROM ledger_candidates ORDER BY id"))
