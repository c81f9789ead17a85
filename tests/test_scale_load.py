"""The scale run's load (bench/scale.py, `make bench SCALE=N`): the messages it loads are records the
archive can vouch for. Its SQL record digest equals the archive's message_digest() on awkward rows; each
loaded message has its leaf in one gapless log, its media row points at a real object, and `verify` finds
nothing wrong; a row changed after the load is named."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import asyncpg

from bench import scale
from bench import search as search_bench
from tests.conftest import DatabaseUrls
from wa_archive.integrity import verification
from wa_archive.integrity.ledger import canonical, message_digest, sha256_hex
from wa_archive.storage.filesystem import FilesystemStore

ROWS = 1_234  # more than one COPY batch below, and not a multiple of it


async def test_loaded_messages_verify_against_their_leaves(
        clean_db: asyncpg.Pool, admin_pool: asyncpg.Pool, database_urls: DatabaseUrls, tmp_path: Path) -> None:
    raw = await asyncpg.create_pool(database_urls.admin, min_size=1, max_size=2)  # as the bench's own pool: no jsonb codec
    try:
        indexes = await raw.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = ANY($1::text[]) ORDER BY 1",
                                  list(scale.LOADED_TABLES))
        figures, contacts = await scale.load(SimpleNamespace(pool=raw, root=tmp_path), ROWS,  # type: ignore[arg-type]
                                             batch_rows=500, per_contact=100)
        # The indexes set aside for the load are all back, as they were defined.
        assert await raw.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = ANY($1::text[]) ORDER BY 1",
                               list(scale.LOADED_TABLES)) == indexes
        assert figures["secondary_indexes"] > 10
    finally:
        await raw.close()

    assert figures["messages"] == ROWS and len(contacts) == ROWS // 100
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == ROWS
    assert await clean_db.fetchval("SELECT count(*) FROM media") == figures["media_rows"] == 124
    # One gapless log, every message in it once, nothing left waiting for its number.
    assert await clean_db.fetchval("SELECT count(*) FROM ledger_candidates") == 0
    assert await clean_db.fetchval("SELECT size FROM ledger_head") == ROWS
    assert await clean_db.fetchval("SELECT count(DISTINCT seq) = max(seq) + 1 AND count(DISTINCT record_id) = $1"
                                   " FROM ledger_leaves WHERE kind = 'message'", ROWS)
    # The same messages as the search benchmark's loader gives, in the same order.
    first = next(search_bench.synthetic_messages(1, random.Random(16), contacts, prefix="SCALE", media_every=10))
    assert await clean_db.fetchval("SELECT text FROM messages WHERE id = $1", first[0]) == first[6]

    # The loaded log's tiles are written (verify_log checks each against its leaves).
    assert await clean_db.fetchval("SELECT count(*) FROM ledger_tiles") == ROWS // 256 and figures["tiles_s"] >= 0
    store = FilesystemStore(tmp_path / "objects")
    assert await verification.verify_log(clean_db, None) == []
    assert await verification.verify_objects(clean_db, store, sample=50) == []

    victim = "wamid.SCALE000000010"  # an image: its media row is part of its digest
    async with admin_pool.acquire() as conn, conn.transaction():  # an insider, past the write-once trigger
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE media SET size = size + 1 WHERE message_id = $1", victim)
    assert await verification.verify_log(clean_db, None) == [
        f"message {victim}: changed since it was archived (row or its media)"]


AWKWARD_TEXTS = ['quote " backslash \\ slash / tab \t newline \n return \r', "bell \x07 escape \x1b del \x7f",
                 "naïve café ☕ 𝄞 \u2028 \u00a0", "", None, "{\"a\": [1, 2]}"]


async def test_sql_digest_equals_message_digest(clean_db: asyncpg.Pool, admin_pool: asyncpg.Pool,
                                                database_url: str) -> None:
    """pg_temp.scale_message_digest() against message_digest() on the same rows read back: nulls, escapes,
    control characters, non-ASCII text, flags, microseconds or none, with no media, one, or two."""
    rows = []
    for i, text in enumerate(AWKWARD_TEXTS):
        ts = datetime(2025, 1, 2, 3, 4, 5, 6000 * i, tzinfo=timezone.utc)
        rows.append((f"wamid.DIGEST{i}", "meta" if i % 2 else "wasender", "in" if i % 3 else "out", "text", ts,
                     None if i == 1 else f"4477009001{i:02d}", None if i % 2 else f"wa-{i}", None if i != 3 else "u3",
                     None if i != 2 else "user\"name", text, text and text[::-1], None if i != 4 else "wamid.OTHER",
                     [] if i % 2 else ["edited", 'he said "hi"'], "archived" if i != 5 else "failed"))
    async with admin_pool.acquire() as conn, conn.transaction():
        for row in rows:
            await conn.execute(
                "INSERT INTO messages (id, source, direction, type, ts, contact_phone, contact_wa_id, contact_user_id,"
                " contact_username, contact_name, text, related_message_id, flags, archive_status, payload)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, '{}')", *row)
        for position, (sha, size) in enumerate((("ab" * 32, 7), ("cd" * 32, None))):
            await conn.execute(
                "INSERT INTO media (message_id, position, media_id, kind, status, storage_key, size, sha256)"
                " VALUES ('wamid.DIGEST1', $1, $2, 'image', 'archived', $3, $4, $5)",
                position, f"m\\{position}", f"k/\"{position}", size, sha)
        await conn.execute("INSERT INTO media (message_id, position, media_id, kind, status)"
                           " VALUES ('wamid.DIGEST2', 0, 'failed-one', 'image', 'failed')")
    # A connection of its own, closed after: the function lives in its session's pg_temp, which a
    # pooled connection would keep (objects the application role would then own).
    conn = await asyncpg.connect(database_url)
    try:
        await scale.create_digest_function(conn)
        computed = {r["id"]: r["digest"] for r in await conn.fetch(
            scale.DIGESTS, "wamid.DIGEST0", "wamid.DIGEST9", sha256_hex(canonical({})))}
    finally:
        await conn.close()
    for message in await clean_db.fetch("SELECT * FROM messages"):
        media = await clean_db.fetch("SELECT * FROM media WHERE message_id = $1 ORDER BY position", message["id"])
        assert computed[message["id"]] == message_digest(message, media), message["id"]
    assert len(computed) == len(AWKWARD_TEXTS)
