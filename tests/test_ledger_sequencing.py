"""Batched sequencing of the ledger (issue 16): records add leaf candidates without waiting on each other,
the integrator numbers them into one gapless log, nothing committed is lost when a connection drops, a
checkpoint never covers a leaf that is not integrated, and an existing log migrates in place."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import LEDGER_KEY, DatabaseUrls, scratch_database, wait_until
from wa_archive.db import create_pool, migrate
from wa_archive.devstack.embedded import APP_ROLE
from wa_archive.errors import LedgerPending
from wa_archive.integrity import ledger, merkle, receipts, sequencing, verification
from wa_archive.storage.filesystem import FilesystemStore

WRITERS, PER_WRITER = 32, 15


async def _connect(url: str) -> asyncpg.Connection:
    """One connection of its own (to drop or hold open), reading jsonb as the archive's pool does."""
    conn = await asyncpg.connect(url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


def _signer() -> ledger.Signer:
    return ledger.Signer(base64.b64decode(LEDGER_KEY))


async def _log(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM ledger_leaves ORDER BY seq"))


def _recomputed_root(records: list[tuple[str, str, str]]) -> bytes:
    return merkle.root([merkle.leaf_hash(ledger.leaf_bytes(*r)) for r in records])


async def _message(conn: asyncpg.Connection, text: str, *, old_way: bool = False) -> str:
    """An archived message row and its ledger leaf, in the caller's transaction (as archive/writes.py does;
    `old_way`: through ledger_append(), as the code before migration 020 did)."""
    mid = f"wamid.SEQ{uuid.uuid4().hex[:12]}"
    await conn.execute(
        "INSERT INTO messages (id, source, direction, type, ts, archive_status, payload, text, retain_until)"
        " VALUES ($1, 'meta', 'in', 'text', now(), 'archived', '{}'::jsonb, $2, now() + interval '1 year')",
        mid, text)
    if old_way:
        row = await conn.fetchrow("SELECT * FROM messages WHERE id = $1", mid)
        await conn.execute("SELECT ledger_append('message', $1, $2)", mid, ledger.message_digest(row, []))
    else:
        await ledger.append_message(conn, mid)
    return mid


async def test_32_concurrent_writers_and_two_integrators_make_one_gapless_log_matching_the_records(
        clean_db, database_url):
    pool = clean_db
    written: dict[int, list[tuple[str, str, str]]] = {w: [] for w in range(WRITERS)}
    writers_done = asyncio.Event()

    async def writer(w: int) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for i in range(PER_WRITER):
                record = ("access", f"w{w}-{i}", f"{w:02x}{i:02x}" * 16)
                async with conn.transaction():
                    await ledger.append(conn, *record)
                written[w].append(record)  # acknowledged only once committed
        finally:
            await conn.close()

    integrated: list[int] = []

    async def integrator() -> None:
        while not writers_done.is_set():
            integrated.append(await sequencing.integrate(pool, batch=7))  # small batches: many runs, interleaved
            await asyncio.sleep(0.005)

    integrators = [asyncio.create_task(integrator()) for _ in range(2)]
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    writers_done.set()
    await asyncio.gather(*integrators)
    integrated.append(await sequencing.integrate(pool))

    leaves = await _log(pool)
    total = WRITERS * PER_WRITER
    assert sum(integrated) == total
    assert [leaf["seq"] for leaf in leaves] == list(range(total))  # gapless, each number once
    assert await pool.fetchval("SELECT size FROM ledger_head") == total
    assert await pool.fetchval("SELECT count(*) FROM ledger_candidates") == 0
    in_log = [(leaf["kind"], leaf["record_id"], leaf["digest"]) for leaf in leaves]
    assert sorted(in_log) == sorted(r for rs in written.values() for r in rs)  # every record once, no other
    # The root over the stored leaf hashes is the one recomputed from the records, in the log's order.
    assert merkle.root([bytes(leaf["leaf_hash"]) for leaf in leaves]) == _recomputed_root(in_log)
    # A stable order: what one writer committed first is numbered first.
    position = {r: n for n, r in enumerate(in_log)}
    for records in written.values():
        assert [position[r] for r in records] == sorted(position[r] for r in records)
    # Every leaf checks out; the access records they name were never written here, which verify says.
    assert await verification.verify_log(pool, None) == [f"access {rid}: deleted (its ledger entry remains)"
                                                         for (_, rid, _) in in_log]


async def test_a_connection_dropped_between_candidate_and_integration_loses_nothing(clean_db, database_url):
    pool = clean_db
    async with pool.acquire() as conn, conn.transaction():
        committed = [await _message(conn, f"committed {n}") for n in range(3)]
    # An integrator that dies mid-run (its connection dropped before commit) numbers nothing for good.
    dying = await _connect(database_url)
    await dying.execute("BEGIN")
    taken = await dying.fetch("SELECT * FROM ledger_integrate(100)")
    assert [r["seq"] for r in taken] == [0, 1, 2]
    backend = dying.get_server_pid()
    dying.terminate()
    await wait_until(lambda: _gone(pool, backend), "the dropped integrator's transaction rolled back")
    assert await pool.fetchval("SELECT size FROM ledger_head") == 0
    assert await pool.fetchval("SELECT count(*) FROM ledger_candidates") == 3
    # A writer still in its transaction is not integrated; a writer dropped before commit left nothing.
    open_writer = await _connect(database_url)
    await open_writer.execute("BEGIN")
    late = await _message(open_writer, "committed after the next run")
    lost = await _connect(database_url)
    await lost.execute("BEGIN")
    never = await _message(lost, "never committed")
    lost.terminate()
    # The next run integrates what was committed, in order.
    assert await sequencing.integrate(pool) == 3
    assert [leaf["record_id"] for leaf in await _log(pool)] == committed
    await open_writer.execute("COMMIT")
    await open_writer.close()
    assert await sequencing.integrate(pool) == 1
    leaves = await _log(pool)
    assert [leaf["record_id"] for leaf in leaves] == [*committed, late]
    assert never not in {leaf["record_id"] for leaf in leaves}
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE id = $1", never) == 0
    assert await verification.verify_log(pool, None) == []


async def _gone(pool: asyncpg.Pool, backend: int) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", backend)


async def test_a_checkpoint_integrates_first_and_never_covers_a_leaf_that_is_not_integrated(
        clean_db, database_url, tmp_path):
    pool, store, signer = clean_db, FilesystemStore(tmp_path / "store"), _signer()
    public_key = signer.public_key()
    async with pool.acquire() as conn, conn.transaction():
        before = [await _message(conn, f"before {n}") for n in range(4)]
    # A record whose transaction is still open while the checkpoint is signed.
    open_writer = await _connect(database_url)
    await open_writer.execute("BEGIN")
    straggler = await _message(open_writer, "still in its transaction")
    first = await ledger.write_checkpoint(pool, store, signer)
    assert first is not None and first["tree_size"] == len(before)  # integrated, then signed
    assert first["tree_size"] == await pool.fetchval("SELECT size FROM ledger_head")
    assert [leaf["record_id"] for leaf in await _log(pool)] == before
    for mid in before:
        assert receipts.verify_receipt(await receipts.receipt(pool, mid, public_key=public_key), public_key) == []
    await open_writer.execute("COMMIT")
    await open_writer.close()
    # Committed but not integrated: no receipt yet, and a clear "ask again" (not "not found").
    with pytest.raises(LedgerPending, match="ask again") as pending:
        await receipts.receipt(pool, straggler, public_key=public_key, integrate_every=2.0)
    assert pending.value.retry_after == 4
    standing = await receipts.message_standing(pool, straggler, public_key)
    assert standing is not None and standing["leaf"] is None and standing["pending"] is not None
    # verify accepts a young candidate for its record, and names one left waiting past the bound.
    assert await verification.verify_log(pool, public_key) == []
    late = await verification.verify_log(pool, public_key, pending_bound=0.0)
    assert len(late) == 1 and late[0].startswith("1 ledger candidate(s) waiting longer than 0 s")
    second = await ledger.write_checkpoint(pool, store, signer)
    assert second is not None and second["tree_size"] == len(before) + 1
    doc = await receipts.receipt(pool, straggler, public_key=public_key)
    assert doc["leaf_index"] == len(before) and receipts.verify_receipt(doc, public_key) == []
    assert await verification.verify_log(pool, public_key) == []
    assert await verification.verify_checkpoint_copies(pool, store, public_key) == []


async def test_the_application_role_cannot_write_candidates_or_integrate_another_order(clean_db, admin_pool):
    pool = clean_db
    # A candidate is (kind, record id, digest): the application cannot choose its place in the order, its
    # time, or anything of its leaf but those fields; nor change or remove a candidate.
    for sql in ("INSERT INTO ledger_candidates (id, kind, record_id, digest) OVERRIDING SYSTEM VALUE"
                " VALUES (-1, 'message', 'wamid.forged', 'd')",
                "INSERT INTO ledger_candidates (kind, record_id, digest, appended_at)"
                " VALUES ('message', 'wamid.forged', 'd', '2020-01-01')",
                "UPDATE ledger_candidates SET digest = 'x'", "DELETE FROM ledger_candidates",
                "TRUNCATE ledger_candidates"):
        with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.RaiseError)):
            await pool.execute(sql)
    with pytest.raises(asyncpg.CheckViolationError):  # only the ledger's kinds
        await pool.execute("INSERT INTO ledger_candidates (kind, record_id, digest) VALUES ('forged', '1', 'd')")
    async with pool.acquire() as conn, conn.transaction():
        first = await ledger.append(conn, "access", "1", "a" * 64)
        second = await ledger.append(conn, "access", "2", "b" * 64)
    assert second > first  # candidate ids, not leaf numbers
    # Even the owner cannot change or drop a candidate outside integration.
    for sql in ("UPDATE ledger_candidates SET digest = 'x'", "DELETE FROM ledger_candidates"):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await admin_pool.execute(sql)
    with pytest.raises(asyncpg.RaiseError, match="at least 1"):
        await pool.fetch("SELECT * FROM ledger_integrate(0)")
    assert [r["seq"] for r in await pool.fetch("SELECT * FROM ledger_integrate(1)")] == [0]
    assert await sequencing.integrate(pool) == 1
    assert [(leaf["seq"], leaf["record_id"]) for leaf in await _log(pool)] == [(0, "1"), (1, "2")]


async def test_an_existing_log_migrates_in_place_and_every_old_receipt_still_verifies(
        database_urls: DatabaseUrls, tmp_path: Path):
    """Migrations up to 019 with leaves written the old way (numbered under the head's lock), old
    checkpoints and receipts made as the old code made them; then 020."""
    async with scratch_database(database_urls, "wa_mig") as (owner_url, app_url):
        await migrate(owner_url, app_role=APP_ROLE, until=19)
        pool = await create_pool(app_url, max_size=4)
        store, signer = FilesystemStore(tmp_path / "store"), _signer()
        public_key = signer.public_key()
        try:
            assert await pool.fetchval("SELECT to_regclass('ledger_candidates')") is None
            messages, old_receipts = [], {}
            for batch in range(3):
                async with pool.acquire() as conn, conn.transaction():
                    for n in range(5):
                        mid = await _message(conn, f"old {batch}.{n}", old_way=True)
                        messages.append(mid)
                        # The old ledger_append() returned the leaf's number, in order.
                        assert await conn.fetchval("SELECT max(seq) FROM ledger_leaves") == len(messages) - 1
                size, root = await _old_checkpoint(pool, signer)
                for mid in messages:
                    old_receipts[mid] = await _old_receipt(pool, mid, size)
            old_leaves = await _log(pool)
            old_root = merkle.root([bytes(leaf["leaf_hash"]) for leaf in old_leaves])
            assert root == old_root.hex()

            applied = await migrate(owner_url, app_role=APP_ROLE)  # 020 and whatever later migrations there are
            assert applied[0] == "020_ledger_candidates.sql"
            assert await _log(pool) == old_leaves  # every leaf keeps its number, hash and time
            assert await pool.fetchval("SELECT size FROM ledger_head") == len(old_leaves)
            for mid, doc in old_receipts.items():
                assert receipts.verify_receipt(doc, public_key) == [], mid
            assert await verification.verify_log(pool, public_key) == []  # records, leaves and old checkpoints
            # New records are sequenced after the old head; the next checkpoint extends the old ones.
            async with pool.acquire() as conn, conn.transaction():
                new = await _message(conn, "after the migration")
            written = await ledger.write_checkpoint(pool, store, signer)
            assert written is not None and written["tree_size"] == len(old_leaves) + 1
            doc = await receipts.receipt(pool, new, public_key=public_key)
            assert doc["leaf_index"] == len(old_leaves) and receipts.verify_receipt(doc, public_key) == []
            for mid in messages:  # and the old records' new receipts name the same leaves
                fresh = await receipts.receipt(pool, mid, public_key=public_key)
                assert fresh["leaf_index"] == old_receipts[mid]["leaf_index"]
                assert receipts.verify_receipt(fresh, public_key) == []
            assert await verification.verify_log(pool, public_key) == []
        finally:
            await pool.close()


async def _old_checkpoint(pool: asyncpg.Pool, signer: ledger.Signer) -> tuple[int, str]:
    """A checkpoint as the code before batched sequencing signed it (no integration step)."""
    leaves = await ledger.leaf_hashes(pool)
    body = ledger.canonical({"tree_size": len(leaves), "root_hash": merkle.root(leaves).hex(),
                             "timestamp": datetime.now(timezone.utc).isoformat(),
                             "public_key": base64.b64encode(signer.public_key()).decode()})
    signature = base64.b64encode(signer.sign(body)).decode()
    await pool.execute("INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key)"
                       " VALUES ($1, $2, $3, $4, $5)", len(leaves), merkle.root(leaves).hex(), body.decode(),
                       signature, ledger.checkpoint_key(len(leaves)))
    return len(leaves), merkle.root(leaves).hex()


async def _old_receipt(pool: asyncpg.Pool, mid: str, size: int) -> dict:
    row = await pool.fetchrow("SELECT * FROM messages WHERE id = $1", mid)
    media = await pool.fetch("SELECT * FROM media WHERE message_id = $1", mid)
    seq = await pool.fetchval("SELECT seq FROM ledger_leaves WHERE kind = 'message' AND record_id = $1", mid)
    checkpoint = await pool.fetchrow("SELECT * FROM ledger_checkpoints WHERE tree_size = $1", size)
    leaves = await ledger.leaf_hashes(pool, size)
    return {"format": "wa-archive-receipt/1",
            "record": {"kind": "message", "id": mid, "digest": ledger.message_digest(row, media)},
            "leaf_index": seq, "inclusion_proof": [h.hex() for h in merkle.inclusion_proof(seq, leaves)],
            "checkpoint": {"body": checkpoint["body"], "signature": checkpoint["signature"]}}
