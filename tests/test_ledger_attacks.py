"""An insider with the application role's database credentials against the ledger's integrator (issue 16).

Batched sequencing moved every record's leaf onto one shared integrator, which runs as the schema owner
(ledger_integrate(), ledger_write_tiles()). Whatever the application role can do must then fail its own
transaction, never the integrator's: no candidate it can commit may make integration fail, no lock it can
hold may make integration wait, and no amount of candidates may keep a checkpoint from being signed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import asyncpg
import pytest

from tests.conftest import LEDGER_KEY
from wa_archive.integrity import ledger, sequencing
from wa_archive.storage.filesystem import FilesystemStore

# The advisory lock numbers the owner's functions once took: any role may take any advisory lock.
FORMER_INTEGRATOR_LOCK, FORMER_TILE_WRITER_LOCK = 2003266413, 2003266420


async def test_a_candidate_too_large_for_the_log_fails_its_own_transaction_not_the_integrator(clean_db):
    """A record id longer than an index entry of the log can hold (about 2.7 kB) used to commit as a
    candidate, and then every integration failed on it for good: no leaf and no checkpoint after it."""
    pool = clean_db
    oversized = "".join(hashlib.sha256(bytes([n])).hexdigest() for n in range(43))  # 2,752 that do not compress
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("INSERT INTO ledger_candidates (kind, record_id, digest) VALUES ('access', $1, $2)",
                           oversized, "ab" * 32)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("SELECT ledger_append('access', $1, $2)", oversized, "ab" * 32)
    with pytest.raises(asyncpg.CheckViolationError):  # a digest is a hash, not a payload
        await pool.execute("INSERT INTO ledger_candidates (kind, record_id, digest) VALUES ('access', '1', $1)",
                           "ab" * 5000)
    async with pool.acquire() as conn, conn.transaction():
        await ledger.append(conn, "message", "wamid." + "x" * 250, "cd" * 32)  # the largest id a message has
    assert await sequencing.integrate(pool) == 1


async def test_no_lock_the_application_role_can_hold_stalls_integration_or_a_checkpoint(clean_db, tmp_path):
    """Advisory locks are anyone's: a session of the application role that took the integrator's lock
    number, idle with no transaction open, made every integration and checkpoint wait until it left.
    Nor may the table locks its privileges allow (reading the ledger's tables: it may not lock them for
    writing), held in an open transaction, make them wait."""
    pool = clean_db
    holder = await pool.acquire()
    try:
        await holder.execute("SELECT pg_advisory_lock($1), pg_advisory_lock($2)",
                             FORMER_INTEGRATOR_LOCK, FORMER_TILE_WRITER_LOCK)
        await holder.execute("BEGIN")
        for table in ("ledger_candidates", "ledger_head", "ledger_leaves", "ledger_tiles", "ledger_checkpoints"):
            await holder.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
        async with pool.acquire() as conn, conn.transaction():
            for n in range(300):  # more than a tile's 256 leaves, so the tile writer has work too
                await ledger.append(conn, "access", str(n), f"{n:064x}")
        assert await asyncio.wait_for(sequencing.integrate(pool), timeout=30) == 300
        assert await pool.fetchval("SELECT count(*) FROM ledger_tiles") == 1
        signer = ledger.Signer(base64.b64decode(LEDGER_KEY))
        written = await asyncio.wait_for(
            ledger.write_checkpoint(pool, FilesystemStore(tmp_path / "store"), signer), timeout=30)
        assert written is not None and written["tree_size"] == 300
    finally:
        await holder.execute("ROLLBACK")
        await holder.execute("SELECT pg_advisory_unlock_all()")
        await pool.release(holder)


async def test_a_flood_of_candidates_cannot_keep_a_checkpoint_from_being_signed(clean_db, tmp_path):
    """integrate() went on while every batch came back full, and a checkpoint integrates first: a writer
    adding candidates faster than they are integrated kept checkpoints from being signed at all. One call
    now integrates at most a bounded number of batches; the rest wait for the next."""
    pool = clean_db
    bound = sequencing.INTEGRATE_BATCH * sequencing.INTEGRATE_BATCHES_PER_CALL
    await pool.execute("INSERT INTO ledger_candidates (kind, record_id, digest)"
                       " SELECT 'access', 'flood-' || g, 'ab' FROM generate_series(1, $1) g", bound + 1000)
    signer = ledger.Signer(base64.b64decode(LEDGER_KEY))
    written = await ledger.write_checkpoint(pool, FilesystemStore(tmp_path / "store"), signer)
    assert written is not None and written["tree_size"] == bound
    assert await pool.fetchval("SELECT count(*) FROM ledger_candidates") == 1000
    assert await sequencing.integrate(pool) == 1000  # the next call takes the rest
