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
from structlog.testing import capture_logs

from tests.conftest import LEDGER_KEY, DatabaseUrls, scratch_database
from wa_archive.db import create_pool, migrate, stalls
from wa_archive.devstack.embedded import APP_ROLE
from wa_archive.integrity import ledger, sequencing
from wa_archive.storage.filesystem import FilesystemStore

# The advisory lock numbers the owner's functions once took: any role may take any advisory lock.
FORMER_INTEGRATOR_LOCK, FORMER_TILE_WRITER_LOCK = 2003266413, 2003266420
# A record id longer than an index entry of the log can hold: 2,752 characters that do not compress.
OVERSIZED_ID = "".join(hashlib.sha256(bytes([n])).hexdigest() for n in range(43))


async def test_a_candidate_too_large_for_the_log_fails_its_own_transaction_not_the_integrator(clean_db):
    """A record id longer than an index entry of the log can hold (about 2.7 kB) used to commit as a
    candidate, and then every integration failed on it for good: no leaf and no checkpoint after it."""
    pool = clean_db
    oversized = OVERSIZED_ID
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


async def test_a_log_already_poisoned_by_an_oversized_candidate_is_mended_by_the_migration(
        database_urls: DatabaseUrls):
    """Before migration 025 such a candidate committed and stopped integration for good; migrating moves it
    aside (kept, with the time it was refused) and integration goes on."""
    async with scratch_database(database_urls, "wa_poison") as (owner_url, app_url):
        await migrate(owner_url, app_role=APP_ROLE, until=24)
        pool = await create_pool(app_url, max_size=2)
        try:
            oversized = OVERSIZED_ID
            await pool.execute("INSERT INTO ledger_candidates (kind, record_id, digest) VALUES ('access', $1, $2)",
                               oversized, "ab" * 32)
            async with pool.acquire() as conn, conn.transaction():
                await ledger.append(conn, "access", "after", "cd" * 32)
            with pytest.raises(asyncpg.ProgramLimitExceededError):
                await sequencing.integrate(pool)
            assert await migrate(owner_url, app_role=APP_ROLE, until=25) == ["025_integrator_unstallable.sql"]
            assert await sequencing.integrate(pool) == 1
            assert await pool.fetchval("SELECT record_id FROM ledger_leaves") == "after"
            assert await pool.fetchval("SELECT record_id FROM ledger_candidates_refused") == oversized
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await pool.execute("INSERT INTO ledger_candidates_refused (kind, record_id, digest) VALUES ('access', '1', '')")
        finally:
            await pool.close()


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


async def test_a_transaction_the_application_role_keeps_open_cannot_hold_the_integrator_up(
        clean_db, database_url, tmp_path):
    """The application role may call the integrator's own functions (its worker must), and insert a
    checkpoint row, inside a transaction it then keeps open: their locks were held for as long as it
    stayed idle. Such a session of the role is now ended once it has held the ledger up for a while
    (stalls.STALL_SECONDS, for each of the three statements in turn)."""
    pool = clean_db
    async with pool.acquire() as conn, conn.transaction():
        for n in range(300):
            await ledger.append(conn, "access", str(n), f"{n:064x}")
    # Integrated first: a checkpoint row beyond the integrated log is refused (migration 026), so the
    # row held is one at the size the writer is about to sign. The integrator's lock is held all the same.
    assert await sequencing.integrate(pool) == 300
    holds = ("SELECT * FROM ledger_integrate(1)", "SELECT ledger_write_tiles(1)",
             "INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key)"
             " VALUES (300, repeat('ab', 32), '{}', 'forged', 'forged')")
    holders = [await asyncpg.connect(database_url) for _ in holds]
    try:
        for holder, sql in zip(holders, holds, strict=True):
            await holder.execute("BEGIN")
            await holder.execute(sql)
        signer = ledger.Signer(base64.b64decode(LEDGER_KEY))
        with capture_logs() as logs:
            written = await asyncio.wait_for(
                ledger.write_checkpoint(pool, FilesystemStore(tmp_path / "store"), signer),
                timeout=3 * stalls.STALL_SECONDS + 60)
        assert written is not None and written["tree_size"] == 300
        assert await pool.fetchval("SELECT signature FROM ledger_checkpoints WHERE tree_size = 300") != "forged"
        assert await pool.fetchval("SELECT count(*) FROM ledger_tiles") == 1
        ended = {e["pid"] for e in logs if e["event"] == "ledger_statement_blocked" and e["ended"]}
        assert ended == {holder.get_server_pid() for holder in holders}
    finally:
        for holder in holders:
            holder.terminate()


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
