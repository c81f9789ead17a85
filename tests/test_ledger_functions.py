"""The owner's ledger functions under a hostile caller: the leaf hash computed in SQL equals Python's
for any text, no session setting of the application role stops appends, and no jsonb row it writes is
nested deeper than a reader can decode."""

from __future__ import annotations

import random

import asyncpg
import pytest

from wa_archive.integrity import ledger, merkle, verification

# --- The ledger's leaf hash: PostgreSQL's to_json against Python's canonical JSON ---------------------


def _tricky_texts() -> list[str]:
    """Text the two encoders could disagree on: every escape class, DEL, line separators, astral
    characters, backslash sequences that look like escapes, and seeded random Unicode."""
    fixed = ["", "\x01\x08\x09\x0a\x0b\x0c\x0d\x1f", "\x7f\x80\x9f", "\u2028\u2029", "\ufeff\ufffd\uffff",
             '"\\/', "\\u0000", "</script>", "\U0001f600\U0010ffff", "e\u0301", "\u00e9", "a" * 5000]
    rng = random.Random(11)
    planes = [(0x01, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    for _ in range(300):
        lo, hi = rng.choice(planes)
        fixed.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 12))))
    return fixed


async def test_the_database_leaf_hash_agrees_with_python_for_any_text(owner_pool):
    """ledger_append() hashes in SQL, verify in Python: one disagreement marks an honest leaf as altered."""
    texts = _tricky_texts()
    rows = await owner_pool.fetch(
        "SELECT t, ledger_leaf_hash('message', t, t) AS h FROM unnest($1::text[]) AS t", texts)
    differ = [r["t"] for r in rows
              if bytes(r["h"]) != merkle.leaf_hash(ledger.leaf_bytes("message", r["t"], r["t"]))]
    assert differ == []


async def test_the_leaves_the_integrator_writes_carry_the_same_hash_for_any_text(clean_db, owner_pool):
    """ledger_integrate() writes the leaf hash out rather than calling ledger_leaf_hash() (migration 022,
    for speed): the two, and Python's, must agree on every text a record id or digest can hold (a
    candidate's digest at most 128 bytes and its id 1,024, migration 025: the longest of each too)."""
    candidates = [(t, t) for t in _tricky_texts() if len(t.encode()) <= 128] + [("a" * 1024, "\u00e9" * 64)]
    await clean_db.executemany("INSERT INTO ledger_candidates (kind, record_id, digest) VALUES ('message', $1, $2)",
                               candidates)
    integrated = await owner_pool.fetch("SELECT * FROM ledger_integrate($1)", len(candidates))
    assert len(integrated) == len(candidates)
    rows = await owner_pool.fetch(
        "SELECT record_id, digest, leaf_hash, ledger_leaf_hash(kind, record_id, digest) AS called"
        " FROM ledger_leaves ORDER BY seq")
    assert [(r["record_id"], r["digest"]) for r in rows] == candidates
    differ = [r["record_id"] for r in rows
              if not bytes(r["leaf_hash"]) == bytes(r["called"])
              == merkle.leaf_hash(ledger.leaf_bytes("message", r["record_id"], r["digest"]))]
    assert differ == []


async def test_a_session_setting_of_the_application_role_cannot_stop_ledger_appends(clean_db, database_url):
    """The application role may switch standard_conforming_strings off for itself, even as its default
    for every connection (ALTER ROLE CURRENT_USER SET ..., which needs no privilege). Had the owner's
    functions read a literal under the caller's setting, every ledger_append() would then fail and no
    process connecting as that role could archive or log a read."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            # Shown and rolled back: the role can make the setting its default for every connection.
            await conn.execute("ALTER ROLE CURRENT_USER SET standard_conforming_strings = off")
            await conn.execute("ALTER ROLE CURRENT_USER RESET standard_conforming_strings")
        await conn.execute("SET standard_conforming_strings = off")
        async with conn.transaction():
            await conn.fetchval("SELECT ledger_append('access', 'probe', 'digest')")
        (seq,) = [r["seq"] for r in await conn.fetch("SELECT seq FROM ledger_integrate(10)")]
        stored = bytes(await conn.fetchval("SELECT leaf_hash FROM ledger_leaves WHERE seq = $1", seq))
    finally:
        await conn.close()
    assert stored == merkle.leaf_hash(ledger.leaf_bytes("access", "probe", "digest"))
    # The chain is whole; the probe leaf names no record, which verify says.
    assert await verification.verify_log(clean_db, None) == ["access probe: deleted (its ledger entry remains)"]


# --- verify blinded by a row the application role may insert ----------------------------------------


async def test_the_database_refuses_json_nested_deeper_than_any_reader_can_decode(clean_db):
    """The application role may INSERT messages (and access-log targets, dispositions' records through
    record_disposition). jsonb nested a few thousand deep would be stored by PostgreSQL, but asyncpg's
    json.loads codec raises RecursionError on reading it, so `verify` would die on its first
    `SELECT * FROM messages` and name none of the tampering it was run to find. The database refuses
    such rows in every jsonb column."""
    pool = clean_db
    deep = "(repeat('[', 5000) || repeat(']', 5000))::jsonb"
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "INSERT INTO messages (id, source, direction, type, ts, archive_status, payload)"
            f" VALUES ('wamid.deep', 'meta', 'in', 'text', now(), 'archived', {deep})")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(f"INSERT INTO access_log (actor, role, action, target) VALUES ('x', 'cli', 'view', {deep})")
    # At the limit the archive's own input can reach (64 levels, json_input.MAX_DEPTH) rows are taken.
    await pool.execute(
        "INSERT INTO access_log (actor, role, action, target)"
        " VALUES ('x', 'cli', 'view', (repeat('[', 64) || repeat(']', 64))::jsonb)")
    target = await pool.fetchval("SELECT target FROM access_log WHERE actor = 'x'")  # decodes
    for _ in range(63):
        target = target[0]
    assert target == []
    unguarded = await pool.fetch(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND c.data_type = 'jsonb' AND t.table_type = 'BASE TABLE'"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = format('%I', c.table_name)::regclass"
        "                 AND k.contype = 'c' AND pg_get_constraintdef(k.oid) LIKE '%jsonb_depth_within%'"
        "                 AND pg_get_constraintdef(k.oid) LIKE '%' || c.column_name || '%')")
    assert [tuple(r) for r in unguarded] == []
