"""Checkpoint rows an insider adds with the application role's database credentials (issue 16).

The worker records each signed checkpoint as a row of ledger_checkpoints, so the application role may
insert there, and nothing in the database can check an Ed25519 signature. A row it inserted without the
archive's key used to be taken as the latest checkpoint: receipts were made against it (and failed
every verifier), the checkpoint gauges said a checkpoint had just been signed, and the writer, finding
a row at its tree size, signed nothing. One far beyond the log did all of that for good.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.conftest import DatabaseUrls, scratch_database
from tests.test_auditor_access import _archive_texts, _call, _signer
from wa_archive.db import create_pool, migrate
from wa_archive.db import gauges as figures
from wa_archive.devstack.embedded import APP_ROLE
from wa_archive.errors import StorageConflict
from wa_archive.integrity import checkpoints, ledger, receipts, sequencing, tree, verification
from wa_archive.integrity.ledger import Signer, canonical
from wa_archive.storage.filesystem import FilesystemStore

INTRUDER = Signer(bytes(range(32)))  # a key that is not the archive's


async def _forge(pool: asyncpg.Pool, size: int, *, root: bytes | None = None) -> None:
    """Insert, as the application role, a checkpoint of `size` signed by the intruder's key (over the
    log's true root when `root` is given: only the key gives it away)."""
    root_hex = (root or b"\x00" * 32).hex()
    body = canonical({"tree_size": size, "root_hash": root_hex, "timestamp": "2026-01-01T00:00:00+00:00",
                      "public_key": base64.b64encode(INTRUDER.public_key()).decode()})
    await pool.execute(
        "INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key) VALUES ($1,$2,$3,$4,$5)",
        size, root_hex, body.decode(), base64.b64encode(INTRUDER.sign(body)).decode(), f"forged/{size}.json")


async def test_the_application_role_cannot_record_a_checkpoint_beyond_the_integrated_log(clean_db):
    pool = clean_db
    async with pool.acquire() as conn, conn.transaction():
        await ledger.append(conn, "access", "one", "ab" * 32)
    assert await sequencing.integrate(pool) == 1
    for size in (2, 10**12, 0, -1):
        with pytest.raises(asyncpg.CheckViolationError, match="integrated"):
            await _forge(pool, size)
    # Nor by a temporary table of its own standing in for the head (found by a review: the check read
    # "ledger_head" as the caller's search_path found it, temporary tables first).
    async with pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE ledger_head (id integer, size bigint)")
        await conn.execute("INSERT INTO ledger_head VALUES (1, 1000000000000)")
        with pytest.raises(asyncpg.CheckViolationError, match="integrated log has 1 leaves"):
            await conn.execute(
                "INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key)"
                " VALUES (1000000000000, '00', '{}', 'x', 'x')")
        await conn.execute("DROP TABLE pg_temp.ledger_head")
    # Nor a row larger than a checkpoint: every reader reads the rows it passes over.
    with pytest.raises(asyncpg.CheckViolationError, match="the_size_of_one"):
        await pool.execute("INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key)"
                           " VALUES (1, '00', $1, 'x', 'x')", "[" * 100_000)
    await _forge(pool, 1)  # within the log: refused only by its signature, which readers check
    assert await pool.fetchval("SELECT count(*) FROM ledger_checkpoints") == 1


async def test_a_row_no_parser_can_read_is_passed_over_not_fatal(database_urls: DatabaseUrls, tmp_path):
    """A body nested deeper than the JSON parser goes made every reader of the latest checkpoint raise:
    the receipts, the gauges and the checkpoint writer. Migration 026 bounds a row's size from then on;
    one written before it is passed over like any other row the archive did not sign."""
    async with scratch_database(database_urls, "wa_deep") as (owner_url, app_url):
        await migrate(owner_url, app_role=APP_ROLE, until=25)
        pool = await create_pool(app_url, max_size=2)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await ledger.append(conn, "access", "one", "ab" * 32)
            signed = await ledger.write_checkpoint(pool, FilesystemStore(tmp_path / "store"), _signer())
            assert signed is not None
            async with pool.acquire() as conn, conn.transaction():
                await ledger.append(conn, "access", "two", "cd" * 32)
            await sequencing.integrate(pool)
            await pool.execute("INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key)"
                               " VALUES (2, '00', $1, 'x', 'x')", "[" * 100_000 + "]" * 100_000)
            await migrate(owner_url, app_role=APP_ROLE)
            with capture_logs() as logs:
                latest = await checkpoints.latest(pool, _signer().public_key())
            assert latest is not None and latest["tree_size"] == signed["tree_size"]
            assert [e["tree_sizes"] for e in logs if e["event"] == "checkpoint_not_signed_by_archive"] == [[2]]
            assert (await figures.archive_figures(pool, _signer().public_key())).checkpoint_tree_size == 1
            problems = await verification.verify_log(pool, _signer().public_key())
            assert any(p.startswith("checkpoint 2: not a checkpoint (RecursionError") for p in problems), problems
        finally:
            await pool.close()


async def test_a_checkpoint_stored_by_a_run_that_stopped_before_its_row_is_recorded_by_the_next(clean_db, tmp_path):
    """A run that stored its checkpoint and stopped before writing the row (a worker killed between the
    two) left each retry signing the same size anew and refused by the write-once store, for as long as
    the log stayed that size. The next run records the stored checkpoint, once checked to be the archive's."""
    pool = clean_db
    store = FilesystemStore(tmp_path / "store")
    async with pool.acquire() as conn, conn.transaction():
        await ledger.append(conn, "access", "one", "ab" * 32)
    await sequencing.integrate(pool)
    root_hex = (await tree.load(pool)).root().hex()
    body = canonical({"tree_size": 1, "root_hash": root_hex, "timestamp": "2026-01-01T00:00:00+00:00",
                      "public_key": base64.b64encode(_signer().public_key()).decode()})
    stopped_run = ledger.checkpoint_document(body.decode(), base64.b64encode(_signer().sign(body)).decode())

    async def chunks():
        yield stopped_run

    await store.put_stream(ledger.checkpoint_key(1), chunks(), content_type="application/json",
                           metadata={"tree-size": "1"}, expected_sha256=None,
                           retain_until=datetime.now(timezone.utc) + timedelta(days=1))
    written = await ledger.write_checkpoint(pool, store, _signer())
    assert written is not None and written["tree_size"] == 1
    row = await pool.fetchrow("SELECT body, signature FROM ledger_checkpoints WHERE tree_size = 1")
    assert ledger.checkpoint_document(row["body"], row["signature"]) == stopped_run
    assert await verification.verify_checkpoint_copies(pool, store, _signer().public_key()) == []
    assert await ledger.write_checkpoint(pool, store, _signer()) is None  # nothing added since

    # A stored copy that is not the archive's is a conflict, as before: never recorded.
    async with pool.acquire() as conn, conn.transaction():
        await ledger.append(conn, "access", "two", "cd" * 32)
    await sequencing.integrate(pool)
    forged = canonical({"tree_size": 2, "root_hash": (await tree.load(pool)).root().hex(),
                        "timestamp": "2026-01-01T00:00:00+00:00",
                        "public_key": base64.b64encode(INTRUDER.public_key()).decode()})

    async def forged_chunks():
        yield ledger.checkpoint_document(forged.decode(), base64.b64encode(INTRUDER.sign(forged)).decode())

    await store.put_stream(ledger.checkpoint_key(2), forged_chunks(), content_type="application/json",
                           metadata={"tree-size": "2"}, expected_sha256=None,
                           retain_until=datetime.now(timezone.utc) + timedelta(days=1))
    with pytest.raises(StorageConflict, match="not the archive's"):
        await ledger.write_checkpoint(pool, store, _signer())
    assert await pool.fetchval("SELECT count(*) FROM ledger_checkpoints WHERE tree_size = 2") == 0


async def test_a_checkpoint_row_the_archive_did_not_sign_is_passed_over(stack):
    trusted = _signer().public_key()
    auditor = await stack.token("auditor")
    (first,) = await _archive_texts(stack, "covered by a checkpoint the archive signed")
    signed = await ledger.write_checkpoint(stack.pool, stack.store, _signer())
    assert signed is not None
    (second,) = await _archive_texts(stack, "covered only by a forged one")
    await sequencing.integrate(stack.pool)
    log = await tree.load(stack.pool)
    size = log.size
    await _forge(stack.pool, size, root=log.root())  # the true root: only the key gives it away

    # The writer signs that size all the same (its write-once copy in the store) and says that the
    # database's row at that size is not the archive's.
    with capture_logs() as logs:
        written = await ledger.write_checkpoint(stack.pool, stack.store, _signer())
    assert written is not None and written["tree_size"] == size
    assert [e["tree_size"] for e in logs if e["event"] == "checkpoint_row_not_the_archives"] == [size], logs
    problems = await verification.verify_log(stack.pool, trusted)
    assert any(f"checkpoint {size}" in p for p in problems), problems

    # The receipt of the first message is made against the archive's checkpoint, and verifies.
    status, _, body = await _call(stack, "GET", f"/api/v1/messages/{quote(first, safe='')}/receipt", auditor)
    assert status == 200, body
    document = json.loads(body)
    assert json.loads(document["checkpoint"]["body"])["tree_size"] == signed["tree_size"]
    assert receipts.verify_receipt(document, trusted) == []
    # The second is covered by no checkpoint row the archive signed yet: none is given.
    status, _, body = await _call(stack, "GET", f"/api/v1/messages/{quote(second, safe='')}/receipt", auditor)
    assert status == 409 and b"no checkpoint covers" in body, body
    standing = await receipts.message_standing(stack.pool, first, trusted)
    assert standing is not None and standing["checkpoint"]["tree_size"] == signed["tree_size"]
    read = await figures.archive_figures(stack.pool, trusted)
    assert read.checkpoint_tree_size == signed["tree_size"]

    # A later checkpoint covers the second message, and bundles leave the forged row out.
    await _archive_texts(stack, "after the forgery")
    later = await ledger.write_checkpoint(stack.pool, stack.store, _signer())
    assert later is not None and later["tree_size"] > size
    status, _, body = await _call(stack, "GET", f"/api/v1/messages/{quote(second, safe='')}/receipt", auditor)
    assert status == 200 and receipts.verify_receipt(json.loads(body), trusted) == [], body
    listed, _, _ = await receipts.bundle_proofs(stack.pool, {}, public_key=trusted)
    assert [c["tree_size"] for c in listed] == [signed["tree_size"], later["tree_size"]]


async def test_a_reader_passes_over_a_bounded_number_of_rows_then_says_so(clean_db, tmp_path):
    """The application role may number leaves itself (ledger_integrate) and insert a row at every size it
    made, one statement for thousands: readers passed over every one on every call. A reader now passes
    over at most checkpoints.PASS_OVER_AT_MOST, then answers as if none were signed, and says so."""
    pool = clean_db
    async with pool.acquire() as conn, conn.transaction():
        await ledger.append(conn, "access", "first", "ab" * 32)
    signed = await ledger.write_checkpoint(pool, FilesystemStore(tmp_path / "store"), _signer())
    assert signed is not None and signed["tree_size"] == 1
    many = checkpoints.PASS_OVER_AT_MOST + 50
    async with pool.acquire() as conn, conn.transaction():
        for n in range(many):
            await ledger.append(conn, "access", f"later-{n}", f"{n:064x}")
    await pool.fetch("SELECT * FROM ledger_integrate($1)", many)

    async def forge_sizes(first: int, last: int) -> None:
        await pool.execute("INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key)"
                           " SELECT g, '00', '{}', 'x', 'x' FROM generate_series($1::bigint, $2::bigint) g",
                           first, last)

    await forge_sizes(2, 100)
    with capture_logs() as logs:
        assert (await checkpoints.latest(pool, _signer().public_key()))["tree_size"] == 1
        assert [row["tree_size"] for row in await checkpoints.every(pool, _signer().public_key())] == [1]
    passed = [e["count"] for e in logs if e["event"] == "checkpoint_not_signed_by_archive"]
    assert passed == [99, 99], logs  # one line a call, not one a row
    await forge_sizes(101, 1 + many)
    with capture_logs() as logs:
        assert await checkpoints.latest(pool, _signer().public_key()) is None
        assert await checkpoints.every(pool, _signer().public_key()) == []  # an export's: bounded too
    assert [e["passed_over"] for e in logs if e["event"] == "checkpoint_search_gave_up"] == \
        [checkpoints.PASS_OVER_AT_MOST] * 2
    assert (await figures.archive_figures(pool, _signer().public_key())).checkpoint_at is None
