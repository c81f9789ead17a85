"""Ledger tiles (issue 16, ten million messages): roots and proofs read through the stored hashes of complete
256-leaf blocks equal the whole tree's at every size; only the owner's function writes a tile, from the
leaves; a tile changed by a superuser is named by `verify`, a missing one costs time and never a wrong
root; an existing log gets its tiles from the migration and its old receipts keep verifying."""

from __future__ import annotations

import base64
import random
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import LEDGER_KEY, DatabaseUrls, scratch_database
from wa_archive.db import create_pool, ledger_tiles, migrate
from wa_archive.db.ledger_tiles import TILE
from wa_archive.devstack.embedded import APP_ROLE
from wa_archive.errors import LedgerLeafMissing
from wa_archive.integrity import ledger, merkle, receipts, sequencing, tree, verification
from wa_archive.storage.filesystem import FilesystemStore

REFUSED = (asyncpg.InsufficientPrivilegeError, asyncpg.RaiseError)
SIZES = 600  # two complete tiles and a tail, and every size below


def _signer() -> ledger.Signer:
    return ledger.Signer(base64.b64decode(LEDGER_KEY))


async def _append(pool: asyncpg.Pool, count: int) -> None:
    """`count` leaf candidates, as records' transactions add them (their records are not the point here)."""
    async with pool.acquire() as conn, conn.transaction():
        for _ in range(count):
            await ledger.append(conn, "access", uuid.uuid4().hex, uuid.uuid4().hex * 2)


async def _leaves(pool: asyncpg.Pool) -> list[bytes]:
    return await ledger.leaf_hashes(pool)


async def _message(conn: asyncpg.Connection, text: str) -> str:
    """An archived message row with its ledger leaf candidate, in the caller's transaction."""
    mid = f"wamid.TILE{uuid.uuid4().hex[:12]}"
    await conn.execute(
        "INSERT INTO messages (id, source, direction, type, ts, archive_status, payload, text, retain_until)"
        " VALUES ($1, 'meta', 'in', 'text', now(), 'archived', '{}'::jsonb, $2, now() + interval '1 year')",
        mid, text)
    await ledger.append_message(conn, mid)
    return mid


async def test_roots_and_proofs_through_tiles_equal_the_whole_trees_at_every_size(clean_db: asyncpg.Pool) -> None:
    pool = clean_db
    # Integrated in uneven steps, so tiles are written as blocks complete, across batch boundaries.
    for step in (1, 100, 154, 1, 300, 44):
        await _append(pool, step)
        await sequencing.integrate(pool, batch=97)
    leaves = await _leaves(pool)
    assert len(leaves) == SIZES
    # The owner's function wrote the root of each complete block and nothing else.
    assert await ledger_tiles.all_tiles(pool) == [(k, merkle.root(leaves[k * TILE:(k + 1) * TILE]))
                                                  for k in range(SIZES // TILE)]
    rng = random.Random(16)
    for n in range(1, SIZES + 1):
        whole = leaves[:n]
        indices = sorted({0, n - 1, n // 2, *(rng.randrange(n) for _ in range(5))})
        sizes = sorted({1, n, max(1, n - 1), (n + 1) // 2, *(rng.randint(1, n) for _ in range(3)),
                        *(m for m in (TILE - 1, TILE, TILE + 1, 2 * TILE) if m <= n)})
        log = await tree.load(pool, n, indices=indices, sizes=sizes)
        assert log.root() == merkle.root(whole), n
        assert log.inclusion_proofs(indices) == merkle.inclusion_proofs(indices, whole), n
        for m in sizes:
            assert log.consistency_proof(m) == merkle.consistency_proof(m, whole), (m, n)
            assert log.root(m) == merkle.root(whole[:m]), (m, n)
    # Every leaf's proof in the whole log at once, and a smaller tree's proofs from the same load.
    everything = await tree.load(pool, indices=range(SIZES), sizes=[TILE + 3])
    assert everything.size == SIZES
    assert everything.inclusion_proofs(range(SIZES)) == merkle.inclusion_proofs(list(range(SIZES)), leaves)
    assert (everything.inclusion_proofs(range(TILE + 3), size=TILE + 3)
            == merkle.inclusion_proofs(list(range(TILE + 3)), leaves[:TILE + 3]))
    assert everything.consistency_proof(TILE + 3, SIZES - 1) == merkle.consistency_proof(TILE + 3, leaves[:-1])
    for bad in (-1, SIZES, True):
        with pytest.raises(ValueError):
            everything.inclusion_proofs([bad])
    for bad_m in (0, SIZES + 1):
        with pytest.raises(ValueError):
            everything.consistency_proof(bad_m)
    with pytest.raises(ValueError):
        everything.root(SIZES + 1)
    assert (await tree.load(pool, 0)).root() == merkle.root([])


async def test_only_the_owners_function_writes_tiles_and_no_one_rewrites_them(
        clean_db: asyncpg.Pool, owner_pool: asyncpg.Pool, admin_pool: asyncpg.Pool) -> None:
    pool = clean_db
    await _append(pool, TILE + 5)
    assert await pool.fetchval("SELECT * FROM ledger_integrate(1000)") is not None  # leaves, no tiles yet
    assert await ledger_tiles.all_tiles(pool) == []
    forged = b"\x00" * 32
    for sql in ("INSERT INTO ledger_tiles (tile, hash) VALUES (0, $1)",
                "INSERT INTO ledger_tiles (tile, hash) VALUES (7, $1)"):
        with pytest.raises(REFUSED):
            await pool.execute(sql, forged)
    assert await ledger_tiles.write(pool) == 1  # the application asks; the owner's function computes
    leaves = await _leaves(pool)
    assert await ledger_tiles.all_tiles(pool) == [(0, merkle.root(leaves[:TILE]))]
    assert await ledger_tiles.write(pool) == 0  # the tail is not a complete block
    for db in (pool, owner_pool):
        for sql in ("UPDATE ledger_tiles SET hash = $1", "DELETE FROM ledger_tiles WHERE hash <> $1"):
            with pytest.raises(REFUSED):
                await db.execute(sql, forged)
        with pytest.raises(REFUSED):
            await db.execute("TRUNCATE ledger_tiles")
    with pytest.raises(REFUSED):
        await pool.execute("SELECT ledger_write_tiles(0)")
    assert await ledger_tiles.all_tiles(admin_pool) == [(0, merkle.root(leaves[:TILE]))]
    assert not await admin_pool.fetchval(
        "SELECT has_function_privilege('public', 'ledger_write_tiles(integer)', 'EXECUTE')")
    assert await admin_pool.fetchval(
        "SELECT prosecdef AND proowner <> (SELECT oid FROM pg_roles WHERE rolname = $1) FROM pg_proc"
        " WHERE oid = 'ledger_write_tiles(integer)'::regprocedure", APP_ROLE)


async def test_verify_names_a_tile_a_superuser_changed(clean_db: asyncpg.Pool, admin_pool: asyncpg.Pool) -> None:
    pool = clean_db
    async with pool.acquire() as conn, conn.transaction():
        for n in range(2 * TILE + 10):
            await _message(conn, f"tile {n}")
    await sequencing.integrate(pool)
    assert len(await ledger_tiles.all_tiles(pool)) == 2
    assert await verification.verify_log(pool, None) == []
    leaves = await _leaves(pool)
    async with admin_pool.acquire() as conn, conn.transaction():  # an insider, past the append-only trigger
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE ledger_tiles SET hash = $1 WHERE tile = 1", merkle.root(leaves[:TILE]))
    assert await verification.verify_log(pool, None) == [
        f"ledger tile 1 (leaves {TILE} to {2 * TILE - 1}) does not match its leaves"]


async def test_a_missing_tile_still_gives_the_right_root_and_proofs(
        clean_db: asyncpg.Pool, admin_pool: asyncpg.Pool, tmp_path: Path) -> None:
    pool = clean_db
    async with pool.acquire() as conn, conn.transaction():
        mids = [await _message(conn, f"tile {n}") for n in range(3 * TILE + 1)]
    await sequencing.integrate(pool)
    async with admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("DELETE FROM ledger_tiles WHERE tile = 1")
    assert [k for k, _ in await ledger_tiles.all_tiles(pool)] == [0, 2]
    leaves = await _leaves(pool)
    log = await tree.load(pool, indices=[TILE + 7])
    assert log.root() == merkle.root(leaves)
    assert log.inclusion_proofs([TILE + 7]) == merkle.inclusion_proofs([TILE + 7], leaves)
    # A checkpoint signs the whole tree's root, and a receipt from the block without its tile verifies.
    signer = _signer()
    written = await ledger.write_checkpoint(pool, FilesystemStore(tmp_path / "store"), signer)
    assert written is not None and written["root_hash"] == merkle.root(leaves).hex()
    doc = await receipts.receipt(pool, mids[TILE + 7], public_key=signer.public_key())
    assert doc["leaf_index"] == TILE + 7 and receipts.verify_receipt(doc, signer.public_key()) == []
    assert await verification.verify_log(pool, signer.public_key()) == []


async def test_a_missing_leaf_is_refused_rather_than_a_tree_of_fewer_leaves(
        clean_db: asyncpg.Pool, admin_pool: asyncpg.Pool) -> None:
    pool = clean_db
    await _append(pool, TILE + 20)
    await sequencing.integrate(pool)
    async with admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("DELETE FROM ledger_leaves WHERE seq = $1", TILE + 3)
    log = await tree.load(pool)
    assert log.size == TILE + 20
    with pytest.raises(LedgerLeafMissing, match=f"ledger leaf {TILE + 3} is missing"):
        log.root()


async def test_the_migration_gives_an_existing_log_its_tiles_and_old_receipts_still_verify(
        database_urls: DatabaseUrls, tmp_path: Path) -> None:
    async with scratch_database(database_urls, "wa_tiles") as (owner_url, app_url):
        await migrate(owner_url, app_role=APP_ROLE, until=23)
        pool = await create_pool(app_url, max_size=4)
        signer = _signer()
        try:
            async with pool.acquire() as conn, conn.transaction():
                mids = [await _message(conn, f"before tiles {n}") for n in range(2 * TILE + 40)]
            await pool.fetch("SELECT * FROM ledger_integrate(10000)")  # as the integrator before migration 024
            leaves = await _leaves(pool)
            size, root = len(leaves), merkle.root(leaves)
            body = ledger.canonical({"tree_size": size, "root_hash": root.hex(),
                                     "timestamp": datetime.now(timezone.utc).isoformat(),
                                     "public_key": base64.b64encode(signer.public_key()).decode()})
            signature = base64.b64encode(signer.sign(body)).decode()
            await pool.execute("INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key)"
                               " VALUES ($1, $2, $3, $4, $5)", size, root.hex(), body.decode(), signature,
                               ledger.checkpoint_key(size))
            picked = [0, TILE - 1, TILE, 2 * TILE + 39]
            # Receipts as the code before the tiles made them: a proof over every leaf.
            old = {i: {"format": "wa-archive-receipt/1",
                       "record": {"kind": "message", "id": mids[i],
                                  "digest": await pool.fetchval("SELECT digest FROM ledger_leaves WHERE seq = $1", i)},
                       "leaf_index": i, "inclusion_proof": [h.hex() for h in merkle.inclusion_proof(i, leaves)],
                       "checkpoint": {"body": body.decode(), "signature": signature}} for i in picked}

            applied = await migrate(owner_url, app_role=APP_ROLE)
            assert applied[0] == "024_ledger_tiles.sql"
            assert await ledger_tiles.all_tiles(pool) == [(k, merkle.root(leaves[k * TILE:(k + 1) * TILE]))
                                                          for k in range(2)]
            for i, doc in old.items():
                assert receipts.verify_receipt(doc, signer.public_key()) == []
                assert await receipts.receipt(pool, mids[i], public_key=signer.public_key()) == doc  # the same proof, now read through tiles
            assert await verification.verify_log(pool, signer.public_key()) == []
        finally:
            await pool.close()
