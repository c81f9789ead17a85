"""What the operators' gauges read from the database: each figure one indexed lookup or a count over a
bounded window, so a refresh costs the same on a day-old archive and a ten-year-old one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from wa_archive.db import ledger_candidates
from wa_archive.integrity import checkpoints


@dataclass(frozen=True)
class ArchiveFigures:
    """The gauges' values as of one read; None where the thing never happened."""

    last_delivery_at: datetime | None
    ledger_tree_size: int
    checkpoint_tree_size: int
    checkpoint_at: datetime | None
    oldest_unsigned_leaf_at: datetime | None
    retrieval_finished_at: datetime | None
    retrieval_failed: int | None
    storage_checked_at: datetime | None
    storage_ok: bool | None
    pending_leaves: int = 0
    oldest_pending_at: datetime | None = None


async def archive_figures(pool: asyncpg.Pool, ledger_key: bytes) -> ArchiveFigures:
    """The figures; the checkpoint ones of the latest checkpoint signed with `ledger_key`."""
    async with pool.acquire() as conn:
        last_delivery = await conn.fetchval("SELECT max(received_at) FROM deliveries")
        tree_size = await conn.fetchval("SELECT size FROM ledger_head WHERE id = 1")
        checkpoint = await checkpoints.latest(conn, ledger_key)
        covered = checkpoint["tree_size"] if checkpoint else 0
        # Leaves are numbered from 0, so the first one a checkpoint of size n leaves out is leaf n.
        unsigned_at = await conn.fetchval("SELECT appended_at FROM ledger_leaves WHERE seq = $1", covered)
        retrieval = await conn.fetchrow(
            "SELECT finished_at, failed FROM retrieval_reports ORDER BY finished_at DESC LIMIT 1")
        storage = await conn.fetchrow("SELECT at, ok FROM storage_checks ORDER BY id DESC LIMIT 1")
        pending = await ledger_candidates.pending(conn)
    return ArchiveFigures(
        last_delivery_at=last_delivery, ledger_tree_size=int(tree_size or 0), checkpoint_tree_size=int(covered),
        checkpoint_at=checkpoint["created_at"] if checkpoint else None, oldest_unsigned_leaf_at=unsigned_at,
        retrieval_finished_at=retrieval["finished_at"] if retrieval else None,
        retrieval_failed=retrieval["failed"] if retrieval else None,
        storage_checked_at=storage["at"] if storage else None, storage_ok=storage["ok"] if storage else None,
        pending_leaves=pending.count, oldest_pending_at=pending.oldest_at)
