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
from urllib.parse import quote

import asyncpg
import pytest
from structlog.testing import capture_logs

from tests.test_auditor_access import _archive_texts, _call, _signer
from wa_archive.db import gauges as figures
from wa_archive.integrity import ledger, receipts, sequencing, tree, verification
from wa_archive.integrity.ledger import Signer, canonical

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
    await _forge(pool, 1)  # within the log: refused only by its signature, which readers check
    assert await pool.fetchval("SELECT count(*) FROM ledger_checkpoints") == 1


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
