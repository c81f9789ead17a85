"""`verify` reads the archive a page at a time (verification.verify_log's `chunk`): the same problems
are named when every tampering sits in a different page, no query fetches more than a page, and the
checkpoints' roots come from a compact range (merkle.CompactRange) equal to the whole tree's root."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg

from bench import scale
from tests.conftest import DatabaseUrls
from wa_archive.db import _init_connection
from wa_archive.integrity import ledger, merkle, verification
from wa_archive.storage.filesystem import FilesystemStore

ROWS = 60
CHUNK = 7  # 60 messages and leaves make nine pages, the last one short


def test_the_compact_range_gives_the_tree_root_at_every_size() -> None:
    rng = random.Random(16)
    leaves = [merkle.leaf_hash(rng.randbytes(8)) for _ in range(300)]
    tree = merkle.CompactRange()
    assert tree.root() == merkle.root([]) and tree.size == 0
    for n, leaf in enumerate(leaves, 1):
        tree.append(leaf)
        assert tree.size == n
        assert tree.root() == merkle.root(leaves[:n]), n


async def _load(clean_db: asyncpg.Pool, database_urls: DatabaseUrls, tmp_path: Path) -> list[str]:
    """ROWS messages with their leaves (every tenth with a media row); their ids in the log's order."""
    raw = await asyncpg.create_pool(database_urls.admin, min_size=1, max_size=2)  # as the bench's: no jsonb codec
    try:
        await scale.load(SimpleNamespace(pool=raw, root=tmp_path), ROWS,  # type: ignore[arg-type]
                         batch_rows=25, per_contact=10)
    finally:
        await raw.close()
    ids = [r["record_id"] for r in await clean_db.fetch("SELECT record_id FROM ledger_leaves ORDER BY seq")]
    assert len(ids) == ROWS
    return ids


async def _as_insider(admin_pool: asyncpg.Pool, *statements: tuple[Any, ...]) -> None:
    """Statements run past the write-once triggers (replica mode), as someone with the superuser's password."""
    async with admin_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for sql, *args in statements:
            await conn.execute(sql, *args)


async def test_tampering_in_different_pages_is_named_as_when_read_whole(
        clean_db: asyncpg.Pool, admin_pool: asyncpg.Pool, database_urls: DatabaseUrls, tmp_path: Path) -> None:
    ids = await _load(clean_db, database_urls, tmp_path)
    assert await verification.verify_log(clean_db, None, chunk=CHUNK) == []
    media = {r["message_id"] for r in await clean_db.fetch("SELECT message_id FROM media")}
    changed, deleted = ids[3], next(i for i in ids[20:] if i not in media)  # pages 1 and 3
    altered, missing = 33, 50  # leaves in pages 5 and 8
    await _as_insider(
        admin_pool,
        ("UPDATE messages SET text = 'Transfer 9,000 EUR to account 66' WHERE id = $1", changed),
        ("DELETE FROM messages WHERE id = $1", deleted),
        ("INSERT INTO messages (id, source, direction, type, ts, archive_status, payload)"
         " VALUES ('wamid.ZZOUTSIDE', 'meta', 'in', 'text', now(), 'archived', '{}')",),
        ("UPDATE ledger_leaves SET leaf_hash = $2 WHERE seq = $1", altered, hashlib.sha256(b"forged").digest()),
        ("DELETE FROM ledger_leaves WHERE seq = $1", missing))
    messages = sorted([(changed, f"message {changed}: changed since it was archived (row or its media)"),
                       (ids[missing], f"message {ids[missing]}: not in the ledger (added outside the archive)"),
                       ("wamid.ZZOUTSIDE", "message wamid.ZZOUTSIDE: not in the ledger (added outside the archive)")])
    expected = [f"ledger leaf {altered} (message {ids[altered]}) was altered",
                f"ledger leaf {missing} is missing (next is {missing + 1})",
                *[problem for _, problem in messages],
                f"message {deleted}: deleted (its ledger entry remains)"]
    assert await verification.verify_log(clean_db, None, chunk=CHUNK) == expected
    assert await verification.verify_log(clean_db, None, chunk=1) == expected
    assert await verification.verify_log(clean_db, None) == expected  # one page


class _CountingConnection(asyncpg.Connection):  # type: ignore[misc]
    """A real connection that notes how many rows each fetch returned and each cursor's page size."""

    fetched: list[int] = []
    prefetch: list[int | None] = []

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await super().fetch(query, *args, **kwargs)
        _CountingConnection.fetched.append(len(rows))
        return rows

    def cursor(self, query: str, *args: Any, prefetch: int | None = None, **kwargs: Any) -> Any:
        _CountingConnection.prefetch.append(prefetch)
        return super().cursor(query, *args, prefetch=prefetch, **kwargs)


async def test_no_query_fetches_more_than_a_page(
        clean_db: asyncpg.Pool, admin_pool: asyncpg.Pool, database_urls: DatabaseUrls, tmp_path: Path) -> None:
    ids = await _load(clean_db, database_urls, tmp_path)
    # Removed and added records, so the anti-joins have rows to return too.
    await _as_insider(admin_pool, *[("DELETE FROM ledger_leaves WHERE seq = $1", n) for n in range(40, ROWS)],
                      *[("DELETE FROM media WHERE message_id = $1", i) for i in ids[:20]],
                      *[("DELETE FROM messages WHERE id = $1", i) for i in ids[:20]])
    pool = await asyncpg.create_pool(database_urls.app, min_size=1, max_size=1, init=_init_connection,
                                     connection_class=_CountingConnection)
    try:
        _CountingConnection.fetched, _CountingConnection.prefetch = [], []
        problems = await verification.verify_log(pool, None, chunk=CHUNK)
    finally:
        await pool.close()
    assert len(problems) == 40  # 20 deleted messages, 20 messages without a leaf
    assert sum(_CountingConnection.fetched) >= 40 + 40  # the leaves and the messages left, a page at a time
    assert max(_CountingConnection.fetched) == CHUNK  # every message has at most one media row here
    assert _CountingConnection.prefetch and set(_CountingConnection.prefetch) == {CHUNK}


async def _checkpoint(pool: asyncpg.Pool, store: FilesystemStore, signer: ledger.Signer, size: int, root: bytes) -> None:
    """A checkpoint of `size` signing `root`, in the table and in the store, as write_checkpoint() keeps one."""
    body = ledger.canonical({"tree_size": size, "root_hash": root.hex(), "timestamp": datetime.now(timezone.utc).isoformat(),
                             "public_key": base64.b64encode(signer.public_key()).decode()})
    signature = base64.b64encode(signer.sign(body)).decode()

    async def document() -> AsyncIterator[bytes]:
        yield ledger.checkpoint_document(body.decode(), signature)

    await store.put_stream(ledger.checkpoint_key(size), document(), content_type="application/json",
                           metadata={"tree-size": str(size)}, expected_sha256=None,
                           retain_until=datetime.now(timezone.utc) + timedelta(days=1))
    await pool.execute(
        "INSERT INTO ledger_checkpoints (tree_size, root_hash, body, signature, storage_key) VALUES ($1,$2,$3,$4,$5)",
        size, root.hex(), body.decode(), signature, ledger.checkpoint_key(size))


async def test_checkpoint_roots_across_pages_and_a_root_the_log_does_not_give(
        clean_db: asyncpg.Pool, database_urls: DatabaseUrls, tmp_path: Path) -> None:
    await _load(clean_db, database_urls, tmp_path)
    hashes = await ledger.leaf_hashes(clean_db)
    signer = ledger.Signer(ledger.Signer.generate_seed())
    store = FilesystemStore(tmp_path / "store")
    for size in (1, 7, 8, 29, ROWS):  # inside the first page, at its end, the next's start, mid-page, the last
        root = merkle.root(hashes[:size]) if size != 29 else hashlib.sha256(b"another history").digest()
        await _checkpoint(clean_db, store, signer, size, root)
    # The forged root is named, and the chain of signed roots is broken on both sides of it.
    expected = ["checkpoint 29{}: root does not match the log", "checkpoint 29{} does not extend checkpoint 8",
                "checkpoint 60{} does not extend checkpoint 29"]
    for chunk in (CHUNK, 1, verification.CHUNK):
        assert await verification.verify_log(clean_db, signer.public_key(), chunk=chunk) == [
            p.format("") for p in expected]
        assert await verification.verify_checkpoint_copies(clean_db, store, signer.public_key(), chunk=chunk) == [
            p.format(" in the store") for p in expected]
