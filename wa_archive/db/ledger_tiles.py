"""Ledger tiles (migration 024): the stored hashes of complete aligned blocks of TILE leaves, written only
by the owner's ledger_write_tiles() from the leaves themselves, and the reads a root or a proof needs."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection

TILE = 256  # leaves per tile: ledger_write_tiles() pairs eight levels, 2 ** 8
# Tiles written per statement: a few seconds of integration at most, so one call stays short; a backlog
# (a log migrated or loaded in bulk) is written in several.
WRITE_BATCH = 1_000


async def write(db: Executor, batch: int = WRITE_BATCH) -> int:
    """Write the tiles of up to `batch` complete blocks of integrated leaves not yet stored; how many."""
    written: int = await db.fetchval("SELECT ledger_write_tiles($1)", batch)
    return written


async def write_all(db: Executor, batch: int = WRITE_BATCH) -> int:
    """Write every complete block's tile not yet stored, `batch` to a statement; how many."""
    total = 0
    while (written := await write(db, batch)) == batch:
        total += written
    return total + written


async def below(conn: asyncpg.Connection, count: int) -> dict[int, bytes]:
    """The stored tiles numbered below `count` (tile k holds leaves TILE*k to TILE*k + TILE - 1)."""
    rows = await conn.fetch("SELECT tile, hash FROM ledger_tiles WHERE tile < $1", count)
    return {int(r["tile"]): bytes(r["hash"]) for r in rows}


async def all_tiles(db: Executor) -> list[tuple[int, bytes]]:
    """Every stored tile in order (for `verify`, which checks each against the leaves)."""
    rows = await db.fetch("SELECT tile, hash FROM ledger_tiles ORDER BY tile")
    return [(int(r["tile"]), bytes(r["hash"])) for r in rows]


async def log_size(conn: asyncpg.Connection) -> int:
    """How many leaves the log holds, as counting them would say while it has no gap (read by its key)."""
    size: int = await conn.fetchval("SELECT coalesce(max(seq) + 1, 0) FROM ledger_leaves")
    return size


async def leaves_of_blocks(conn: asyncpg.Connection, blocks: list[int], end: int) -> dict[int, bytes]:
    """The leaf hashes (by number) of the given blocks of TILE leaves, numbers below `end` only."""
    if not blocks:
        return {}
    rows = await conn.fetch(
        "SELECT l.seq, l.leaf_hash FROM unnest($1::bigint[]) AS b(k)"
        " JOIN ledger_leaves l ON l.seq >= b.k * $2 AND l.seq < least((b.k + 1) * $2, $3)",
        sorted(set(blocks)), TILE, end)
    return {int(r["seq"]): bytes(r["leaf_hash"]) for r in rows}
